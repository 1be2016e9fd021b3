//! `resources/list`, `resources/templates/list` and `resources/read`.

use serde_json::{Value, json};

use crate::output::Reply;
use crate::{INVALID_PARAMS, TEST_IMAGE_BASE64};

/// Resource URI prefix and suffix of the `test://template/{id}/data` template.
pub(crate) const TEMPLATE_PREFIX: &str = "test://template/";
pub(crate) const TEMPLATE_SUFFIX: &str = "/data";

/// MCP's "resource not found" error code (2025-11-25 and earlier; the stateless era answers
/// an unknown resource with [`INVALID_PARAMS`]).
pub(crate) const RESOURCE_NOT_FOUND: i64 = -32002;

/// `_meta` key of the protocol version a stateless-era (2026-07-28) request carries.
pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The `resources/list` result.
pub(crate) fn resource_list() -> Vec<Value> {
    vec![
        json!({
            "uri": "test://static-text",
            "name": "static-text",
            "title": "Static Text Resource",
            "description": "A static text resource for testing",
            "mimeType": "text/plain",
        }),
        json!({
            "uri": "test://static-binary",
            "name": "static-binary",
            "title": "Static Binary Resource",
            "description": "A static binary resource (image) for testing",
            "mimeType": "image/png",
        }),
        json!({
            "uri": "test://watched-resource",
            "name": "watched-resource",
            "title": "Watched Resource",
            "description": "A resource clients can subscribe to",
            "mimeType": "text/plain",
        }),
    ]
}

/// The `resources/templates/list` result.
pub(crate) fn resource_templates() -> Vec<Value> {
    vec![json!({
        "uriTemplate": "test://template/{id}/data",
        "name": "template",
        "title": "Resource Template",
        "description": "A resource template with parameter substitution",
        "mimeType": "application/json",
    })]
}

/// Answers `resources/read`.
pub(crate) fn read_resource(params: &Value) -> Reply {
    let Some(uri) = params.get("uri").and_then(Value::as_str) else {
        return Reply::Error(INVALID_PARAMS, "missing string param `uri`".into());
    };
    let content = match uri {
        "test://static-text" => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }),
        "test://static-binary" => {
            json!({ "uri": uri, "mimeType": "image/png", "blob": TEST_IMAGE_BASE64 })
        }
        "test://watched-resource" => {
            json!({ "uri": uri, "mimeType": "text/plain", "text": "Watched resource content" })
        }
        _ => match template_id(uri) {
            Some(id) => {
                // Built by hand to keep the key order of the reference server's output.
                let id_json = Value::from(id);
                let data_json = Value::from(format!("Data for ID: {id}"));
                let text = format!(r#"{{"id":{id_json},"templateTest":true,"data":{data_json}}}"#);
                json!({ "uri": uri, "mimeType": "application/json", "text": text })
            }
            None => {
                // The stateless era (a protocol version in `_meta`) answers -32602, earlier
                // revisions -32002; both name the URI in `data`.
                let stateless = params
                    .get("_meta")
                    .and_then(|meta| meta.get(META_PROTOCOL_VERSION))
                    .is_some();
                let code = if stateless {
                    INVALID_PARAMS
                } else {
                    RESOURCE_NOT_FOUND
                };
                return Reply::ErrorWithData(
                    code,
                    format!("Resource not found: {uri}"),
                    json!({ "uri": uri }),
                );
            }
        },
    };
    Reply::Result(json!({ "contents": [content] }))
}

/// The `{id}` of a `test://template/{id}/data` URI.
pub(crate) fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}
