//! `${…}` references in a server's definition, replaced as MCP clients replace them:
//! `${env:NAME}` (VS Code, Cursor), `${NAME}` and `${NAME:-default}` (Claude Code) read an
//! environment variable; in a client's file ([`Editor`]) `${userHome}`,
//! `${workspaceFolder}`, `${workspaceFolderBasename}`, `${pathSeparator}` and `${/}` are the
//! editor's own variables. What only the editor can know (`${input:…}`, which it asks the
//! user for, `${command:…}`, the open file…) cannot be replaced.

use std::path::PathBuf;

/// Why a text cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// An environment variable that is not set (or not valid UTF-8).
    #[error("the environment variable {0} is not set")]
    Unset(String),
    /// `${input:ID}`: a value the editor asks the user for.
    #[error("`${{input:{0}}}` is a value the editor asks for when it starts the server")]
    Input(String),
    /// A variable only the editor knows (`${command:…}`, `${file}`, or `${workspaceFolder}`
    /// of a file outside a workspace).
    #[error(
        "`${{{0}}}` is known only to the editor (the bridge replaces `${{env:NAME}}` and \
         `${{NAME}}`)"
    )]
    EditorOnly(String),
    /// `${` without its `}`.
    #[error("a `${{` is not closed by `}}`")]
    Unclosed,
}

/// The editor variables of a client's file.
#[derive(Debug, Clone, Default)]
pub struct Editor {
    /// `${userHome}`.
    pub home: Option<PathBuf>,
    /// `${workspaceFolder}`: the folder of a workspace's `.vscode/mcp.json` or
    /// `.cursor/mcp.json`; unknown for a user-wide file.
    pub workspace: Option<PathBuf>,
}

/// The variables of the editors that depend on what is open in them: a reference to one is
/// [`Unresolved::EditorOnly`], not an environment variable.
const EDITOR_ONLY: &[&str] = &[
    "cwd",
    "defaultBuildTask",
    "execPath",
    "file",
    "fileBasename",
    "fileBasenameNoExtension",
    "fileDirname",
    "fileDirnameBasename",
    "fileExtname",
    "fileWorkspaceFolder",
    "lineNumber",
    "relativeFile",
    "relativeFileDirname",
    "selectedText",
    "workspaceRoot",
];

/// What references may be replaced by.
pub struct Vars<'a> {
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The editor's variables, for a client's file; `None` for the bridge's own file, where
    /// `${NAME}` is always an environment variable.
    pub editor: Option<&'a Editor>,
}

impl Vars<'_> {
    /// `text` with its references replaced.
    pub fn expand(&self, text: &str) -> Result<String, Unresolved> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let inner = &rest[at + 2..];
            let Some(end) = inner.find('}') else {
                return Err(Unresolved::Unclosed);
            };
            out.push_str(&self.value(&inner[..end])?);
            rest = &inner[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The value of the reference `${inner}`.
    fn value(&self, inner: &str) -> Result<String, Unresolved> {
        let env = |name: &str, default: Option<&str>| match (self.env)(name) {
            Some(v) => Ok(v),
            None => default
                .map(str::to_owned)
                .ok_or_else(|| Unresolved::Unset(name.to_owned())),
        };
        if let Some(name) = inner.strip_prefix("env:").filter(|n| !n.is_empty()) {
            return env(name, None);
        }
        if let Some(id) = inner.strip_prefix("input:") {
            return Err(Unresolved::Input(id.to_owned()));
        }
        if let Some((name, default)) = inner.split_once(":-")
            && valid_name(name)
        {
            return env(name, Some(default));
        }
        if !valid_name(inner) {
            return Err(Unresolved::EditorOnly(inner.to_owned()));
        }
        let Some(editor) = self.editor else {
            return env(inner, None);
        };
        let editor_only = || Unresolved::EditorOnly(inner.to_owned());
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .ok_or_else(editor_only)
        };
        match inner {
            "userHome" => path(&editor.home),
            "workspaceFolder" => path(&editor.workspace),
            "workspaceFolderBasename" => editor
                .workspace
                .as_ref()
                .and_then(|w| w.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(editor_only),
            "pathSeparator" | "/" => Ok(std::path::MAIN_SEPARATOR.to_string()),
            _ if EDITOR_ONLY.contains(&inner) => Err(editor_only()),
            _ => env(inner, None),
        }
    }
}

/// Whether `name` may be the name in `${name}`: not empty, no `:`, `{` or whitespace (`/`
/// is the editor's `${/}`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == ':' || c == '{' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn bridge(text: &str) -> Result<String, Unresolved> {
        Vars {
            env: &env,
            editor: None,
        }
        .expand(text)
    }

    fn client(text: &str, editor: &Editor) -> Result<String, Unresolved> {
        Vars {
            env: &env,
            editor: Some(editor),
        }
        .expand(text)
    }

    #[test]
    fn environment_variables_in_both_spellings() {
        assert_eq!(bridge("Bearer ${env:TOKEN}").unwrap(), "Bearer s3cret");
        assert_eq!(bridge("Bearer ${TOKEN}").unwrap(), "Bearer s3cret");
        assert_eq!(bridge("${TOKEN}${TOKEN}x").unwrap(), "s3crets3cretx");
        assert_eq!(bridge("a${EMPTY}b").unwrap(), "ab");
        assert_eq!(bridge("${NOPE:-fallback}").unwrap(), "fallback");
        assert_eq!(bridge("${TOKEN:-fallback}").unwrap(), "s3cret");
        assert_eq!(bridge("${NOPE:-}").unwrap(), "");
        assert_eq!(
            bridge("no refs, $TOKEN and $ alone").unwrap(),
            "no refs, $TOKEN and $ alone"
        );
        assert_eq!(bridge("").unwrap(), "");
    }

    #[test]
    fn what_cannot_be_replaced_is_named() {
        assert_eq!(bridge("${NOPE}"), Err(Unresolved::Unset("NOPE".into())));
        assert_eq!(bridge("${env:NOPE}"), Err(Unresolved::Unset("NOPE".into())));
        assert_eq!(bridge("x ${TOKEN"), Err(Unresolved::Unclosed));
        assert_eq!(bridge("${input:key}"), Err(Unresolved::Input("key".into())));
        assert_eq!(
            bridge("${command:pick}"),
            Err(Unresolved::EditorOnly("command:pick".into()))
        );
        assert_eq!(bridge("${}"), Err(Unresolved::EditorOnly(String::new())));
        assert_eq!(
            bridge("${env:}"),
            Err(Unresolved::EditorOnly("env:".into()))
        );
        // In the bridge's own file, every plain name is an environment variable.
        assert_eq!(
            bridge("${userHome}"),
            Err(Unresolved::Unset("userHome".into()))
        );
        let e = bridge("${input:key}").unwrap_err().to_string();
        assert!(e.contains("${input:key}"), "{e}");
        assert_eq!(
            bridge("${NOPE}").unwrap_err().to_string(),
            "the environment variable NOPE is not set"
        );
    }

    #[test]
    fn editor_variables_in_a_clients_file() {
        let sep = std::path::MAIN_SEPARATOR;
        let editor = Editor {
            home: Some(PathBuf::from("/home/me")),
            workspace: Some(PathBuf::from("/home/me/project")),
        };
        assert_eq!(
            client("${userHome}/x", &editor).unwrap(),
            "/home/me/x".to_string()
        );
        assert_eq!(
            client("${workspaceFolder}", &editor).unwrap(),
            "/home/me/project"
        );
        assert_eq!(
            client("${workspaceFolderBasename}", &editor).unwrap(),
            "project"
        );
        assert_eq!(
            client("a${/}b${pathSeparator}c", &editor).unwrap(),
            format!("a{sep}b{sep}c")
        );
        assert_eq!(client("${env:TOKEN}", &editor).unwrap(), "s3cret");
        assert_eq!(
            client("${file}", &editor),
            Err(Unresolved::EditorOnly("file".into()))
        );
        let user_wide = Editor {
            home: Some(PathBuf::from("/home/me")),
            workspace: None,
        };
        assert_eq!(
            client("${workspaceFolder}/x", &user_wide),
            Err(Unresolved::EditorOnly("workspaceFolder".into()))
        );
    }
}
