//! The roots the bridge reports to a server that asks for `roots/list`.

/// A root the bridge reports to the child when it asks for `roots/list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Root {
    /// `file://` URI.
    pub uri: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
