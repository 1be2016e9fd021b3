//! `prompts/list`, `prompts/get` (but for the prompt that asks the client, in
//! `input_tools`) and `completion/complete` of the prompts' and the template's arguments.

use serde_json::{Value, json};

use crate::output::Reply;
use crate::{INVALID_PARAMS, TEST_IMAGE_BASE64};

/// The prompt that asks the client for input (and so runs on a thread of its own).
pub(crate) const INPUT_PROMPT: &str = "test_input_required_result_prompt";

/// The `prompts/list` result; `version` (bumped by `test_trigger_prompt_change`) shows in the
/// description of `test_simple_prompt` once non-zero.
pub(crate) fn prompt_list(version: u64) -> Vec<Value> {
    let argument = |name: &str, description: &str| json!({ "name": name, "description": description, "required": true });
    let simple_description = match version {
        0 => "A simple prompt without arguments".to_owned(),
        v => format!("A simple prompt without arguments (prompt list version {v})"),
    };
    vec![
        json!({
            "name": "test_simple_prompt",
            "title": "Simple Test Prompt",
            "description": simple_description,
        }),
        json!({
            "name": "test_prompt_with_arguments",
            "title": "Prompt With Arguments",
            "description": "A prompt with required arguments",
            "arguments": [argument("arg1", "First test argument"), argument("arg2", "Second test argument")],
        }),
        json!({
            "name": "test_prompt_with_embedded_resource",
            "title": "Prompt With Embedded Resource",
            "description": "A prompt that includes an embedded resource",
            "arguments": [argument("resourceUri", "URI of the resource to embed")],
        }),
        json!({
            "name": "test_prompt_with_image",
            "title": "Prompt With Image",
            "description": "A prompt that includes image content",
        }),
        json!({
            "name": INPUT_PROMPT,
            "title": "Prompt Asking For Input",
            "description": "Asks the user for context (elicitation/create with id `user_context`), then uses it",
        }),
    ]
}

/// Answers `prompts/get`.
pub(crate) fn get_prompt(params: &Value) -> Reply {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Reply::Error(INVALID_PARAMS, "missing string param `name`".into());
    };
    let args = params.get("arguments");
    let arg = |key: &str| args.and_then(|a| a.get(key)).and_then(Value::as_str);
    let missing =
        |key: &str| Reply::Error(INVALID_PARAMS, format!("missing required argument `{key}`"));
    let user = |content: Value| json!({ "role": "user", "content": content });
    let messages = match name {
        "test_simple_prompt" => vec![user(
            json!({ "type": "text", "text": "This is a simple prompt for testing." }),
        )],
        "test_prompt_with_arguments" => {
            let (Some(arg1), Some(arg2)) = (arg("arg1"), arg("arg2")) else {
                return missing(if arg("arg1").is_none() {
                    "arg1"
                } else {
                    "arg2"
                });
            };
            vec![user(json!({
                "type": "text",
                "text": format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
            }))]
        }
        "test_prompt_with_embedded_resource" => {
            let Some(uri) = arg("resourceUri") else {
                return missing("resourceUri");
            };
            vec![
                user(json!({
                    "type": "resource",
                    "resource": { "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing." },
                })),
                user(
                    json!({ "type": "text", "text": "Please process the embedded resource above." }),
                ),
            ]
        }
        "test_prompt_with_image" => vec![
            user(json!({ "type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png" })),
            user(json!({ "type": "text", "text": "Please analyze the image above." })),
        ],
        other => return Reply::Error(INVALID_PARAMS, format!("Unknown prompt: {other}")),
    };
    Reply::Result(json!({ "messages": messages }))
}

/// Answers `completion/complete` with prefix-filtered suggestions.
pub(crate) fn complete(params: &Value) -> Reply {
    let reference = params.get("ref");
    let ref_type = reference
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str);
    let ref_name = reference
        .and_then(|r| r.get("name").or_else(|| r.get("uri")))
        .and_then(Value::as_str);
    let argument = params.get("argument");
    let arg_name = argument.and_then(|a| a.get("name")).and_then(Value::as_str);
    let prefix = argument
        .and_then(|a| a.get("value"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let candidates: &[&str] = match (ref_type, ref_name, arg_name) {
        (Some("ref/prompt"), Some("test_prompt_with_arguments"), Some("arg1")) => {
            &["paris", "park", "party"]
        }
        (Some("ref/prompt"), Some("test_prompt_with_arguments"), Some("arg2")) => {
            &["world", "work", "worth"]
        }
        (Some("ref/resource"), Some("test://template/{id}/data"), Some("id")) => {
            &["1", "2", "3", "123"]
        }
        _ => &[],
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(prefix))
        .collect();
    Reply::Result(json!({
        "completion": { "values": values, "total": values.len(), "hasMore": false },
    }))
}
