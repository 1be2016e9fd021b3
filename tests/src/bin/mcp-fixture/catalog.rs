//! What `tools/list` shows: every tool with its input schema, and the elicitation schemas
//! of the conformance suite's form tools.

use serde_json::{Map, Value, json};

/// An input schema with no arguments.
pub(crate) fn no_args() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// An input schema with the given required string arguments (name, description).
pub(crate) fn string_args(args: &[(&str, &str)]) -> Value {
    let properties: Map<String, Value> = args
        .iter()
        .map(|(name, description)| {
            (
                (*name).to_owned(),
                json!({ "type": "string", "description": description }),
            )
        })
        .collect();
    let required: Vec<&str> = args.iter().map(|(name, _)| *name).collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// One `tools/list` entry.
pub(crate) fn tool(name: &str, description: &str, input_schema: Value) -> Value {
    json!({ "name": name, "description": description, "inputSchema": input_schema })
}

/// The `tools/list` result; `version` (bumped by `test_trigger_tool_change`) shows in that
/// tool's description once non-zero.
pub(crate) fn tool_list(version: u64) -> Vec<Value> {
    let trigger_tool_description = match version {
        0 => "Changes the tool list (this description) and sends notifications/tools/list_changed"
            .to_owned(),
        v => format!(
            "Changes the tool list (this description) and sends notifications/tools/list_changed (tool list version {v})"
        ),
    };
    vec![
        tool(
            "test_simple_text",
            "Tests simple text content response",
            no_args(),
        ),
        tool(
            "test_image_content",
            "Tests image content response",
            no_args(),
        ),
        tool(
            "test_audio_content",
            "Tests audio content response",
            no_args(),
        ),
        tool(
            "test_embedded_resource",
            "Tests embedded resource content response",
            no_args(),
        ),
        tool(
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
            no_args(),
        ),
        tool(
            "test_tool_with_logging",
            "Tests tool that emits log messages during execution",
            no_args(),
        ),
        tool(
            "test_tool_with_progress",
            "Tests tool that reports progress notifications",
            no_args(),
        ),
        tool(
            "test_error_handling",
            "Tests error response handling",
            no_args(),
        ),
        tool(
            "test_reconnection",
            "Tests SSE stream disconnection and client reconnection (SEP-1699); over stdio it just answers after 100 ms",
            no_args(),
        ),
        tool(
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            string_args(&[("prompt", "The prompt to send to the LLM")]),
        ),
        tool(
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            string_args(&[("message", "The message to show the user")]),
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Tests elicitation with default values per SEP-1034",
            no_args(),
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Tests elicitation with enum schema improvements per SEP-1330",
            no_args(),
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613, SEP-2106)",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } },
                    },
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                    "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                    "phone": { "type": "string" },
                    "email": { "type": "string" },
                },
                "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
                "if": {
                    "properties": { "contactMethod": { "const": "phone" } },
                    "required": ["contactMethod"],
                },
                "then": { "required": ["phone"] },
                "else": { "required": ["email"] },
                "additionalProperties": false,
            }),
        ),
        tool(
            "test_input_required_result_elicitation",
            "Asks the user's name (elicitation/create with id `user_name`), answers `Hello, <name>!`",
            no_args(),
        ),
        tool(
            "test_input_required_result_sampling",
            "Asks the client's LLM the capital of France (sampling/createMessage with id `capital_question`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_list_roots",
            "Asks the client's roots (roots/list with id `client_roots`) and names them",
            no_args(),
        ),
        tool(
            "test_input_required_result_request_state",
            "Asks a confirmation (elicitation/create with id `confirm`); the answer contains `state-ok`",
            no_args(),
        ),
        tool(
            "test_input_required_result_multiple_inputs",
            "Asks at once a name (`user_name`), a greeting (`greeting`, sampling) and the roots (`client_roots`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_multi_round",
            "Asks a name (`step1`), then a favorite color (`step2`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_tampered_state",
            "Asks an approval (elicitation/create with id `approval`)",
            no_args(),
        ),
        tool(
            "test_input_required_result_capabilities",
            "Asks only for what the client declared in `_meta` (`capability_elicitation`, `capability_sampling`, `capability_roots`)",
            no_args(),
        ),
        tool(
            "test_missing_capability",
            "Needs sampling: sends sampling/createMessage (id `missing_capability`) whatever the client declared",
            no_args(),
        ),
        tool(
            "test_streaming_elicitation",
            "Sends progress (with a token), then asks a confirmation (elicitation/create with id `streaming_elicitation`)",
            no_args(),
        ),
        tool(
            "test_logging_tool",
            "Sends a debug, an info and a warning notifications/message, then answers",
            no_args(),
        ),
        tool(
            "test_trigger_tool_change",
            &trigger_tool_description,
            no_args(),
        ),
        tool(
            "test_trigger_prompt_change",
            "Changes the prompt list (the description of `test_simple_prompt`) and sends notifications/prompts/list_changed",
            no_args(),
        ),
        tool(
            "echo",
            "Returns `text`; sends one progress notification first if a progress token is given",
            string_args(&[("text", "Text to return")]),
        ),
        tool(
            "test_custom_header",
            "Echoes `region`, which clients mirror into the Mcp-Param-Region header",
            json!({
                "type": "object",
                "properties": {
                    "region": { "type": "string", "description": "A region", "x-mcp-header": "Region" },
                    "query": { "type": "string", "description": "Ignored" },
                },
                "required": ["region"],
            }),
        ),
        tool(
            "slow",
            "Waits `ms` milliseconds then answers `done <tag>`; stops without answering if cancelled",
            json!({
                "type": "object",
                "properties": {
                    "ms": { "type": "number", "minimum": 0, "default": 60000, "description": "How long to wait" },
                    "tag": { "type": "string", "description": "Label echoed in the answer and the counts file" },
                },
            }),
        ),
        tool(
            "elicit_echo",
            "Elicits an `answer` from the user and returns `<payload>|<action>|<answer>`",
            string_args(&[("payload", "Text put into the elicitation message")]),
        ),
        tool(
            "test_roots",
            "Asks the client for its roots and returns the raw answer",
            no_args(),
        ),
        tool(
            "trigger_list_changed",
            "Sends notifications/tools/list_changed, then answers `ok`",
            no_args(),
        ),
        tool(
            "touch_resource",
            "Sends notifications/resources/updated for `uri`, then answers `ok`",
            string_args(&[("uri", "URI of the updated resource")]),
        ),
        tool(
            "big",
            "Returns one text item of exactly `bytes` `x` characters",
            json!({
                "type": "object",
                "properties": {
                    "bytes": { "type": "integer", "minimum": 0, "description": "Length of the text" },
                },
                "required": ["bytes"],
            }),
        ),
        tool(
            "garbage_then_echo",
            "Writes a non-JSON line to stdout, then behaves like `echo`",
            string_args(&[("text", "Text to return")]),
        ),
        tool(
            "exit",
            "Makes the server process exit at once with `code` (default 1), without answering",
            json!({
                "type": "object",
                "properties": {
                    "code": { "type": "integer", "description": "Exit code" },
                },
            }),
        ),
        tool(
            "spawn_grandchild",
            "Starts a long-lived child process in the server's process group; answers its pid",
            no_args(),
        ),
        tool(
            "flood",
            "Sends `count` progress notifications of `bytes` characters each, then answers `flooded <count>`",
            json!({
                "type": "object",
                "properties": {
                    "count": { "type": "integer", "minimum": 0, "default": 100 },
                    "bytes": { "type": "integer", "minimum": 0, "default": 1024 },
                },
            }),
        ),
    ]
}

/// Requested schema of `test_elicitation_sep1034_defaults`: defaults for every primitive type.
pub(crate) fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true },
        },
        "required": [],
    })
}

/// Requested schema of `test_elicitation_sep1330_enums`: the five enum variants.
pub(crate) fn sep1330_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" },
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" },
                    ],
                },
            },
        },
        "required": [],
    })
}
