//! Windows specifics of starting the MCP server.
//!
//! - **Finding the program.** `std::process::Command` on Windows only looks for `<name>.exe`
//!   on its own, while most servers are started through `.cmd` shims (`npx.cmd`,
//!   `uvx.cmd`…). [`resolve_program`] searches `PATH` × `PATHEXT` the way a terminal does and
//!   returns the full path; std then starts `.bat`/`.cmd` files through `cmd.exe` with each
//!   argument escaped for it, and quotes the arguments of `.exe` programs.
//! - **Arguments std refuses.** No Windows program can receive a NUL character, and std
//!   refuses line breaks in the arguments of a batch file (`cmd.exe` would cut the command
//!   line there). [`check_args`] names the offending argument before anything starts.
//! - **The process tree.** Windows has no process groups that can be signalled and no
//!   parent-death signal: the server runs in a Job Object with
//!   `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, created suspended and resumed once it is in the
//!   job so that nothing it starts escapes it; the bridge terminates the job to stop the
//!   server, and if the bridge dies, however it dies, the kernel closes its last handle to
//!   the job and kills the whole tree. That is `process-wrap`'s `JobObject` wrapper, set up
//!   in child.rs.
//!
//! The lookup and the argument check are plain functions of strings, compiled and tested
//! on every platform.

#![cfg_attr(not(windows), allow(dead_code))]

/// Extensions `CreateProcessW` can start: programs directly, batch files through
/// `cmd.exe` (std does that).
const RUNNABLE: [&str; 4] = [".com", ".exe", ".bat", ".cmd"];

/// What Windows uses when `PATHEXT` is unset (its runnable part).
const DEFAULT_PATHEXT: &str = ".COM;.EXE;.BAT;.CMD";

/// Finds a bare program name such as `npx` on `path` (a Windows `PATH`: `;`-separated,
/// entries possibly in double quotes) with the extensions of `pathext` (a Windows
/// `PATHEXT`), the way `cmd.exe` and PowerShell do, and returns the full path of the first
/// match: directories in `PATH` order, and within a directory the extensions in `PATHEXT`
/// order. `exists` tells whether a file exists.
///
/// - Only the extensions `CreateProcessW` can start count (`.com`, `.exe`, `.bat`,
///   `.cmd`, compared case-insensitively); without any in `pathext`, all four are tried.
/// - A name that already ends with one of them (`npx.cmd`, `node.EXE`) is looked up as
///   it is; another dot (`python3.11`) is not an extension.
/// - A name with a directory or a drive (`.\server.cmd`, `C:\tools\srv`, `bin/srv`) is
///   returned unchanged, and so is a name found nowhere, so that the spawn error names
///   what the user typed. The current directory is not searched (std does not either).
pub fn resolve_program(
    program: &str,
    path: &str,
    pathext: &str,
    exists: impl Fn(&str) -> bool,
) -> String {
    if program.is_empty() || program.contains(['\\', '/', ':']) {
        return program.to_string();
    }
    let explicit = program
        .rfind('.')
        .is_some_and(|dot| is_runnable(&program[dot..]));
    let mut extensions: Vec<String> = Vec::new();
    if !explicit {
        for ext in pathext.split(';').map(str::trim) {
            let ext = ext.to_ascii_lowercase();
            if is_runnable(&ext) && !extensions.contains(&ext) {
                extensions.push(ext);
            }
        }
        if extensions.is_empty() {
            extensions = DEFAULT_PATHEXT
                .split(';')
                .map(str::to_ascii_lowercase)
                .collect();
        }
    }
    for dir in path.split(';') {
        let dir = dir.trim_matches('"');
        if dir.is_empty() {
            continue;
        }
        let sep = if dir.ends_with(['\\', '/']) { "" } else { "\\" };
        let base = format!("{dir}{sep}{program}");
        if explicit {
            if exists(&base) {
                return base;
            }
            continue;
        }
        for ext in &extensions {
            let candidate = format!("{base}{ext}");
            if exists(&candidate) {
                return candidate;
            }
        }
    }
    program.to_string()
}

/// Whether `ext` (with its dot) is an extension `CreateProcessW` can start.
fn is_runnable(ext: &str) -> bool {
    RUNNABLE.iter().any(|r| r.eq_ignore_ascii_case(ext))
}

/// Whether `program` is a batch file (`.bat` or `.cmd`, any case), which std starts
/// through `cmd.exe`.
pub fn is_batch_file(program: &str) -> bool {
    let lower = program.to_ascii_lowercase();
    lower.ends_with(".bat") || lower.ends_with(".cmd")
}

/// Checks that Windows can pass every argument to `program` intact, naming the first one
/// it cannot (counted from 1): a NUL character never can, and a line break cannot reach a
/// batch file. Quotes, spaces, `%`, `^`, `&` and the like are fine: std quotes and escapes
/// them.
pub fn check_args(program: &str, args: &[String]) -> Result<(), String> {
    let batch = is_batch_file(program);
    for (i, arg) in args.iter().enumerate() {
        let n = i + 1;
        if arg.contains('\0') {
            return Err(format!(
                "argument {n} contains a NUL character, which no Windows program can receive"
            ));
        }
        if batch && arg.contains(['\r', '\n']) {
            return Err(format!(
                "argument {n} contains a line break, which Windows cannot pass to a .cmd or \
                 .bat program; start the program it wraps (for example node.exe and its \
                 script) directly"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake file system: the files that exist, compared case-insensitively like NTFS.
    fn fs(files: &[&str]) -> impl Fn(&str) -> bool {
        let files: Vec<String> = files.iter().map(|f| f.to_ascii_lowercase()).collect();
        move |p: &str| files.contains(&p.to_ascii_lowercase())
    }

    const PATH: &str = r"C:\Windows\system32;C:\Program Files\nodejs\;C:\Users\me\.local\bin";
    const PATHEXT: &str = ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC";

    /// Checks each `(program, PATH, PATHEXT, resolved)` against the files that exist.
    fn resolves(exists: impl Fn(&str) -> bool, cases: &[(&str, &str, &str, &str)]) {
        for &(program, path, pathext, want) in cases {
            assert_eq!(
                resolve_program(program, path, pathext, &exists),
                want,
                "{program} with PATH {path:?} and PATHEXT {pathext:?}"
            );
        }
    }

    #[test]
    fn finds_cmd_shims() {
        let exists = fs(&[
            r"C:\Program Files\nodejs\npx",
            r"C:\Program Files\nodejs\npx.cmd",
            r"C:\Program Files\nodejs\npx.ps1",
            r"C:\Users\me\.local\bin\uvx.exe",
        ]);
        resolves(
            exists,
            &[
                ("npx", PATH, PATHEXT, r"C:\Program Files\nodejs\npx.cmd"),
                ("uvx", PATH, PATHEXT, r"C:\Users\me\.local\bin\uvx.exe"),
            ],
        );
    }

    #[test]
    fn path_order_first_then_pathext_order() {
        let exists = fs(&[
            r"C:\a\srv.cmd",
            r"C:\b\srv.exe",
            r"C:\a\tool.cmd",
            r"C:\a\tool.bat",
        ]);
        resolves(
            exists,
            &[
                ("srv", r"C:\a;C:\b", PATHEXT, r"C:\a\srv.cmd"),
                ("tool", r"C:\a", ".CMD;.BAT", r"C:\a\tool.cmd"),
                ("tool", r"C:\a", ".BAT;.CMD", r"C:\a\tool.bat"),
            ],
        );
    }

    #[test]
    fn extensions_are_case_insensitive() {
        resolves(
            fs(&[r"C:\n\npx.cmd"]),
            &[
                ("npx", r"C:\n", ".cMd", r"C:\n\npx.cmd"),
                ("NPX.CMD", r"C:\n", PATHEXT, r"C:\n\NPX.CMD"),
                ("npx.Cmd", r"C:\n", ".EXE", r"C:\n\npx.Cmd"),
            ],
        );
    }

    #[test]
    fn explicit_extension_is_kept() {
        let exists = fs(&[r"C:\n\node.exe", r"C:\n\node.exe.cmd", r"C:\n\npx.cmd"]);
        resolves(
            exists,
            &[
                ("node.exe", r"C:\n", PATHEXT, r"C:\n\node.exe"),
                // Only the named file counts, not another extension of the same name.
                ("npx.exe", r"C:\n", PATHEXT, "npx.exe"),
            ],
        );
    }

    #[test]
    fn other_dots_are_not_extensions() {
        let exists = fs(&[r"C:\py\python3.11.exe", r"C:\py\server.js.cmd"]);
        resolves(
            exists,
            &[
                ("python3.11", r"C:\py", PATHEXT, r"C:\py\python3.11.exe"),
                // `.js` is in PATHEXT but CreateProcess cannot start it.
                ("server.js", r"C:\py", PATHEXT, r"C:\py\server.js.cmd"),
            ],
        );
    }

    #[test]
    fn only_startable_extensions_are_tried() {
        let exists = fs(&[
            r"C:\s\srv.js",
            r"C:\s\srv.vbs",
            r"C:\s\srv.ps1",
            r"C:\s\srv",
        ]);
        resolves(exists, &[("srv", r"C:\s", PATHEXT, "srv")]);
        resolves(
            fs(&[r"C:\s\srv.bat"]),
            &[
                ("srv", r"C:\s", ".JS;.PY", r"C:\s\srv.bat"),
                ("srv", r"C:\s", "", r"C:\s\srv.bat"),
            ],
        );
    }

    #[test]
    fn paths_are_untouched() {
        for p in [
            r".\server.cmd",
            r"..\bin\server",
            r"C:\tools\server",
            r"C:server",
            "bin/server",
            r"\\host\share\server.cmd",
            "",
        ] {
            resolves(|_: &str| true, &[(p, PATH, PATHEXT, p)]);
        }
    }

    #[test]
    fn not_found_gives_the_name_back() {
        resolves(
            fs(&[]),
            &[
                ("no-such-server", PATH, PATHEXT, "no-such-server"),
                ("npx", "", PATHEXT, "npx"),
            ],
        );
    }

    #[test]
    fn path_entries_quoted_empty_or_with_trailing_separator() {
        let exists = fs(&[r"C:\Program Files\x\srv.cmd", r"D:\y\srv.exe"]);
        resolves(
            exists,
            &[
                (
                    "srv",
                    r#";;"C:\Program Files\x";"#,
                    PATHEXT,
                    r"C:\Program Files\x\srv.cmd",
                ),
                ("srv", r"D:\y\", PATHEXT, r"D:\y\srv.exe"),
            ],
        );
        resolves(
            fs(&["D:/y/srv.exe"]),
            &[("srv", "D:/y/", PATHEXT, "D:/y/srv.exe")],
        );
    }

    #[test]
    fn batch_files_are_recognised() {
        assert!(is_batch_file(r"C:\n\npx.cmd"));
        assert!(is_batch_file(r"C:\n\run.BAT"));
        assert!(!is_batch_file(r"C:\n\node.exe"));
        assert!(!is_batch_file("npx"));
    }

    #[test]
    fn arguments_windows_can_pass() {
        let args: Vec<String> = [
            "-y",
            "@modelcontextprotocol/server-filesystem",
            r"C:\Users\me\My Notes",
            r#"say "hi""#,
            "%PATH% & echo ^|",
            r"trailing\",
            "",
            "naïve ünïcode",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(check_args(r"C:\n\npx.cmd", &args), Ok(()));
        assert_eq!(check_args(r"C:\n\node.exe", &args), Ok(()));
    }

    #[test]
    fn arguments_windows_cannot_pass() {
        let args = vec!["ok".to_string(), "two\nlines".to_string()];
        let err = check_args(r"C:\n\npx.cmd", &args).unwrap_err();
        assert!(
            err.contains("argument 2") && err.contains("line break"),
            "{err}"
        );
        let args = vec!["a\rb".to_string()];
        assert!(check_args(r"C:\n\RUN.BAT", &args).is_err());
        // A program that is not a batch file receives line breaks intact.
        assert_eq!(check_args(r"C:\n\node.exe", &args), Ok(()));
        let args = vec!["a\0b".to_string()];
        let err = check_args(r"C:\n\node.exe", &args).unwrap_err();
        assert!(err.contains("argument 1") && err.contains("NUL"), "{err}");
    }
}
