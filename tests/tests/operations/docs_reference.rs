//! The documentation held against what it describes, so that the two cannot drift apart:
//!
//! - docs/reference/bridge.md and docs/reference/relay.md have a section per subcommand of
//!   each binary (a heading that is the command in backticks, e.g. `` ## `bridge run` ``)
//!   whose tables list exactly the flags that subcommand's `--help` prints (a global flag
//!   in the section of the command that declares it), each with its environment variable;
//! - docs/reference/config.md lists exactly the keys the binaries accept in their
//!   configuration files. The binaries say which keys a table accepts (their "unknown key"
//!   errors list them); every documented key is also written to a file on its own and must
//!   not be reported unknown; and the relay's own key table (`KEYS` in its source) agrees;
//! - every relative link of the project's Markdown files leads to a file that exists (and,
//!   with a `#fragment`, to one of its headings), and the README stays short and links
//!   every page under docs/.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{bin, repo_root};

/// The README's size limit: what it is, the diagram, the two commands, where to go next.
const README_MAX_BYTES: u64 = 10 * 1024;
/// A key no configuration file accepts, whose error lists the keys the table accepts.
const BOGUS_KEY: &str = "qqqqqqqqqqqqqqqqqqqq";
/// A value no key accepts (an array mixing types): the error names the key, or calls it
/// unknown.
const BAD_VALUE: &str = "[1, \"x\"]";
/// How a documented key names a table of the user's choosing (`servers.NAME.command`).
const PLACEHOLDER: &str = "NAME";
/// What stands for [`PLACEHOLDER`] in the files written.
const PLACEHOLDER_VALUE: &str = "abc";

/// What a binary printed and whether it succeeded.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program args…` with an empty environment (but `PATH`) and `home` as its home and
/// configuration directory, killing it if it has not ended within 20 s.
fn run(program: &Path, args: &[&str], home: &Path) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("NO_COLOR", "1")
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {} did not end within 20 s",
                program.display(),
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        success: status.success(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// `--help`

/// What one `--help` lists.
#[derive(Debug, Default)]
struct Help {
    /// Long flags (without `--`) and the environment variables each one reads.
    flags: BTreeMap<String, BTreeSet<String>>,
    /// Subcommands (without clap's own `help`).
    subcommands: Vec<String>,
}

/// Parses clap's long help: flags start a line indented by 2 (`-q, --quiet`) or 6
/// (`--config <CONFIG>`) spaces, their descriptions and `[env: NAME=]` lines are indented
/// further, and subcommands are listed under `Commands:`.
fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut in_commands = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if trimmed.is_empty() {
                in_commands = false;
            } else if let Some(name) = trimmed.split_whitespace().next()
                && indent == 2
                && name != "help"
            {
                help.subcommands.push(name.to_owned());
            }
            continue;
        }
        if (indent == 2 || indent == 6) && trimmed.starts_with('-') {
            current = trimmed
                .split([',', ' '])
                .find_map(|word| word.strip_prefix("--"))
                .map(str::to_owned);
            if let Some(flag) = &current {
                help.flags.entry(flag.clone()).or_default();
            }
        } else if let Some(rest) = trimmed.strip_prefix("[env: ")
            && let Some(flag) = &current
        {
            let name = rest.split(['=', ']']).next().unwrap_or_default();
            help.flags
                .entry(flag.clone())
                .or_default()
                .insert(name.to_owned());
        }
    }
    help
}

/// The `--help` of every command of a binary, by its path (`[]` for the binary itself,
/// `["service", "install"]`).
fn command_tree(program: &Path, home: &Path) -> BTreeMap<Vec<String>, Help> {
    let mut tree = BTreeMap::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run(program, &args, home);
        assert!(
            out.success,
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            out.stderr
        );
        let help = parse_help(&out.stdout);
        for sub in &help.subcommands {
            let mut child = path.clone();
            child.push(sub.clone());
            todo.push(child);
        }
        tree.insert(path, help);
    }
    tree
}

// ---------------------------------------------------------------------------------------
// Markdown

/// A table row of a section: its first cell, and the line it is on.
struct Row {
    line: usize,
    first_cell: String,
}

/// The lines of a Markdown text outside fenced code blocks, with their numbers (from 1).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The text of a heading line (`## Text` → `Text`), if it is one.
fn heading(line: &str) -> Option<&str> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    let rest = &line[hashes..];
    ((1..=6).contains(&hashes) && rest.starts_with(' ')).then(|| rest.trim())
}

/// The table rows under each heading whose text is one code span (`` `bridge run` ``), by
/// that span's text. Header and separator rows are left out.
fn command_sections(text: &str) -> BTreeMap<String, Vec<Row>> {
    let mut sections: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (number, line) in prose_lines(text) {
        if let Some(h) = heading(line) {
            current = h
                .strip_prefix('`')
                .and_then(|h| h.strip_suffix('`'))
                .filter(|inner| !inner.contains('`'))
                .map(str::to_owned);
            if let Some(name) = &current {
                sections.entry(name.clone()).or_default();
            }
            continue;
        }
        let (Some(name), Some(cell)) = (&current, first_cell(line)) else {
            continue;
        };
        let plain = cell.trim();
        let separator = !plain.is_empty() && plain.chars().all(|c| c == '-' || c == ':');
        if separator || plain == "flag" || plain == "key" {
            continue;
        }
        sections.entry(name.clone()).or_default().push(Row {
            line: number,
            first_cell: cell,
        });
    }
    sections
}

/// The first cell of a table row (`| a \| b | c |` → `a | b`).
fn first_cell(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('|')?;
    let mut cell = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => cell.push('|'),
                Some(other) => {
                    cell.push('\\');
                    cell.push(other);
                }
                None => cell.push('\\'),
            },
            '|' => return Some(cell),
            c => cell.push(c),
        }
    }
    None
}

/// The code spans of a piece of Markdown.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The long flags a cell names (`--config`, without the dashes).
fn flags_in(cell: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let mut rest = cell;
    while let Some(at) = rest.find("--") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + 2..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        let starts_word = before.is_none_or(|c| !(c.is_alphanumeric() || c == '-'));
        if starts_word && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            flags.push(name.clone());
        }
        let skip = if name.is_empty() {
            after.chars().next().map_or(0, char::len_utf8)
        } else {
            name.len()
        };
        rest = &after[skip..];
    }
    flags
}

/// The environment variables a cell names (code spans such as `` `BRIDGE_CONFIG` ``).
fn env_vars_in(cell: &str) -> BTreeSet<String> {
    code_spans(cell)
        .into_iter()
        .filter(|s| {
            s.contains('_')
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Flags

/// Compares a binary's commands and flags with its reference page; the differences.
fn flag_differences(binary: &str, page: &str) -> Vec<String> {
    let home = tempfile::tempdir().expect("tempdir");
    let tree = command_tree(&bin(binary), home.path());
    let sections = command_sections(&read(page));
    let mut errors = Vec::new();
    let mut commands = BTreeSet::new();
    for (path, help) in &tree {
        let command = std::iter::once(binary.to_owned())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        commands.insert(command.clone());
        // A global flag shows in every subcommand's help: it is documented where it is
        // declared.
        let inherited: BTreeSet<&String> = match path.split_last() {
            Some((_, parent)) => tree[parent].flags.keys().collect(),
            None => BTreeSet::new(),
        };
        let own: BTreeMap<&String, &BTreeSet<String>> = help
            .flags
            .iter()
            .filter(|(f, _)| !inherited.contains(f) && *f != "help" && *f != "version")
            .collect();
        let Some(rows) = sections.get(&command) else {
            errors.push(format!(
                "{page}: no section \"## `{command}`\" for `{command}` (its flags: {})",
                own.keys()
                    .map(|f| format!("--{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        };
        let mut documented: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows {
            let flags = flags_in(&row.first_cell);
            let envs = env_vars_in(&row.first_cell);
            let mut read_by_flags = BTreeSet::new();
            for flag in &flags {
                if let Some(previous) = documented.insert(flag.clone(), row.line) {
                    errors.push(format!(
                        "{page}:{}: --{flag} of `{command}` is also documented on line {previous}",
                        row.line
                    ));
                }
                if let Some(wanted) = own.get(flag) {
                    read_by_flags.extend(wanted.iter().cloned());
                    for env in wanted.iter().filter(|e| !envs.contains(*e)) {
                        errors.push(format!(
                            "{page}:{}: --{flag} of `{command}` reads {env}, which the row does not name",
                            row.line
                        ));
                    }
                }
            }
            for env in envs.difference(&read_by_flags) {
                errors.push(format!(
                    "{page}:{}: the row names {env}, which none of its flags of `{command}` reads",
                    row.line
                ));
            }
        }
        for flag in own.keys().filter(|f| !documented.contains_key(**f)) {
            errors.push(format!(
                "{page}: --{flag} of `{command}` is not documented in its section"
            ));
        }
        for (flag, line) in documented.iter().filter(|(f, _)| !own.contains_key(f)) {
            errors.push(format!(
                "{page}:{line}: --{flag} is documented for `{command}`, whose --help does not list it"
            ));
        }
    }
    for section in sections.keys() {
        let ours = section == binary || section.starts_with(&format!("{binary} "));
        if ours && !commands.contains(section) {
            errors.push(format!(
                "{page}: a section documents `{section}`, which `{binary}` does not have"
            ));
        }
    }
    errors
}

#[test]
fn every_bridge_flag_is_documented() {
    let errors = flag_differences("bridge", "docs/reference/bridge.md");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_relay_flag_is_documented() {
    let errors = flag_differences("relay", "docs/reference/relay.md");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Configuration keys

/// One binary's configuration file.
struct ConfigFile {
    /// The binary.
    binary: &'static str,
    /// The subcommand that reads the file.
    subcommand: &'static str,
    /// The heading of its section in docs/reference/config.md.
    section: &'static str,
}

const BRIDGE_FILE: ConfigFile = ConfigFile {
    binary: "bridge",
    subcommand: "run",
    section: "bridge run --config",
};

const RELAY_FILE: ConfigFile = ConfigFile {
    binary: "relay",
    subcommand: "serve",
    section: "relay serve --config",
};

/// The TOML text setting `key` (dotted, [`PLACEHOLDER`] for a table of the user's choosing)
/// to `value`.
fn toml_setting(key: &[String], value: &str) -> String {
    let segments: Vec<&str> = key
        .iter()
        .map(|s| {
            if s == PLACEHOLDER {
                PLACEHOLDER_VALUE
            } else {
                s
            }
        })
        .collect();
    match segments.split_last() {
        Some((last, [])) => format!("{last} = {value}\n"),
        Some((last, table)) => format!("[{}]\n{last} = {value}\n", table.join(".")),
        None => String::new(),
    }
}

/// Has the binary read `text` as its configuration file; what it wrote on standard error.
/// The file is never valid, so the binary must stop at once.
fn load(file: &ConfigFile, dir: &Path, text: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write the configuration file");
    let path = path.to_str().expect("a UTF-8 temporary path");
    let out = run(&bin(file.binary), &[file.subcommand, "--config", path], dir);
    assert!(
        !out.success,
        "{} {} accepted the configuration file\n{text}",
        file.binary, file.subcommand
    );
    out.stderr
}

/// The keys an "unknown key" error says its table accepts: the bridge's
/// ``(expected one of `a`, `b`)`` or the relay's `(known keys: a, b)`.
fn listed_keys(message: &str) -> Option<Vec<String>> {
    let line = message.lines().find(|l| l.contains("unknown key"))?;
    if let Some(rest) = line
        .split_once("(expected one of ")
        .or_else(|| line.split_once("(expected "))
        .map(|(_, rest)| rest)
    {
        let list = rest.split(')').next().unwrap_or_default();
        return Some(code_spans(list).into_iter().map(str::to_owned).collect());
    }
    let (_, rest) = line.split_once("(known keys: ")?;
    let list = rest.split(')').next().unwrap_or_default();
    Some(list.split(", ").map(str::to_owned).collect())
}

/// The keys the table at `path` accepts, if it is a table whose errors list them.
fn table_keys(file: &ConfigFile, dir: &Path, path: &[String]) -> Option<Vec<String>> {
    let mut key = path.to_vec();
    key.push(BOGUS_KEY.to_owned());
    listed_keys(&load(file, dir, &toml_setting(&key, "1")))
}

/// Every key the binary accepts in its file, dotted, tables included: asks each table
/// (and each table of tables, such as `servers.NAME`) which keys it takes.
fn accepted_keys(file: &ConfigFile) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut keys = BTreeSet::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        assert!(path.len() < 6, "configuration keys nest too deep: {path:?}");
        let found = table_keys(file, dir.path(), &path)
            .map(|k| (path.clone(), k))
            .or_else(|| {
                let mut named = path.clone();
                named.push(PLACEHOLDER.to_owned());
                let nameable = path.last().is_some_and(|l| l != PLACEHOLDER);
                nameable
                    .then(|| table_keys(file, dir.path(), &named))
                    .flatten()
                    .map(|k| (named, k))
            });
        let Some((base, names)) = found else {
            // The top level is a table: its error must say which keys it takes.
            assert!(
                !path.is_empty(),
                "`{} {} --config` no longer lists the keys it accepts when it meets an \
                 unknown one: {}",
                file.binary,
                file.subcommand,
                load(
                    file,
                    dir.path(),
                    &toml_setting(&[BOGUS_KEY.to_owned()], "1")
                )
                .trim()
            );
            continue;
        };
        for name in names {
            let mut key = base.clone();
            key.push(name);
            keys.insert(key.join("."));
            todo.push(key);
        }
    }
    keys
}

/// The keys docs/reference/config.md lists for a file (every key named in the first cell
/// of a table of its section).
fn documented_keys(file: &ConfigFile) -> BTreeMap<String, usize> {
    let sections = command_sections(&read("docs/reference/config.md"));
    let rows = sections.get(file.section).unwrap_or_else(|| {
        panic!(
            "docs/reference/config.md: no section \"## `{}`\"",
            file.section
        )
    });
    let mut keys = BTreeMap::new();
    for row in rows {
        for span in code_spans(&row.first_cell) {
            let key_like = span.starts_with(|c: char| c.is_ascii_lowercase())
                && span
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if key_like {
                keys.insert(span.to_owned(), row.line);
            }
        }
    }
    keys
}

/// A documented key and the tables it implies (`tls.cert` → `tls`; `servers.NAME.cwd` →
/// `servers`).
fn with_tables(keys: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for key in keys {
        let segments: Vec<&str> = key.split('.').collect();
        for end in 1..segments.len() {
            if segments[end - 1] != PLACEHOLDER {
                all.insert(segments[..end].join("."));
            }
        }
        all.insert(key);
    }
    all
}

/// Compares the keys a binary accepts with the documented ones, and has the binary read
/// each documented key on its own; the differences.
fn key_differences(file: &ConfigFile) -> Vec<String> {
    let documented = documented_keys(file);
    let accepted = accepted_keys(file);
    let expected = with_tables(documented.keys().cloned());
    let page = "docs/reference/config.md";
    let mut errors = Vec::new();
    for key in accepted.difference(&expected) {
        errors.push(format!(
            "{page}: `{key}` is accepted by `{} {} --config` but not documented",
            file.binary, file.subcommand
        ));
    }
    for key in expected.difference(&accepted) {
        let line = documented
            .get(key)
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        errors.push(format!(
            "{page}{line}: `{key}` is documented but `{} {} --config` does not accept it",
            file.binary, file.subcommand
        ));
    }
    // Each documented key, set alone to a value of the wrong type: the error must be about
    // its value, not an unknown key.
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, line) in &documented {
        let leaf = !documented.keys().any(|k| k.starts_with(&format!("{key}.")));
        if !leaf {
            continue;
        }
        let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        let stderr = load(file, dir.path(), &toml_setting(&segments, BAD_VALUE));
        let named = key.replace(PLACEHOLDER, PLACEHOLDER_VALUE);
        if stderr.contains("unknown key") || !stderr.contains(&named) {
            errors.push(format!(
                "{page}:{line}: `{key}` set alone is not read as a key by `{} {}`: {}",
                file.binary,
                file.subcommand,
                stderr.trim()
            ));
        }
    }
    errors
}

/// The keys of the relay's `KEYS` table, read from its source.
fn relay_source_keys() -> BTreeSet<String> {
    const START: &str = "pub const KEYS: &[(&str, &str)] = &[";
    let mut files = Vec::new();
    files_with_extension(&repo_root().join("relay/src"), "rs", &mut files);
    let text = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find(|t| t.contains(START))
        .expect("relay/src declares `pub const KEYS: &[(&str, &str)]`");
    let table = text.split(START).nth(1).unwrap_or_default();
    let table = table.split("];").next().unwrap_or_default();
    table
        .lines()
        .filter_map(|l| l.trim().strip_prefix("(\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_bridge_config_key_is_documented() {
    let errors = key_differences(&BRIDGE_FILE);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_relay_config_key_is_documented() {
    let mut errors = key_differences(&RELAY_FILE);
    let documented: BTreeSet<String> = documented_keys(&RELAY_FILE).into_keys().collect();
    let source = relay_source_keys();
    for key in source.difference(&documented) {
        errors.push(format!(
            "docs/reference/config.md: `{key}` is in the relay's KEYS but not documented"
        ));
    }
    for key in documented.difference(&source) {
        errors.push(format!(
            "docs/reference/config.md: `{key}` is documented but not in the relay's KEYS"
        ));
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Links

/// Files ending in `.ext` under `dir`, leaving out build output, installed helpers and
/// hidden directories.
fn files_with_extension(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            let skipped = ["target", "node_modules", "corpus", "artifacts"];
            if !name.starts_with('.') && !skipped.contains(&name.as_str()) {
                files_with_extension(&path, ext, out);
            }
        } else if name.ends_with(&format!(".{ext}")) {
            out.push(path);
        }
    }
}

/// The anchors of a Markdown file's headings, as GitHub makes them.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let Some(h) = heading(line) else { continue };
        let slug: String = h
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// The inline links of a Markdown text outside code (`[text](target)`): line and target.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    // A code span may continue on the next line, never past a blank one.
    let mut in_code = false;
    for (number, line) in prose_lines(text) {
        if line.trim().is_empty() {
            in_code = false;
            continue;
        }
        // Code spans hold examples, not links: blank them out.
        let prose: String = line
            .chars()
            .map(|c| {
                if c == '`' {
                    in_code = !in_code;
                    ' '
                } else if in_code {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let target = after.split(')').next().unwrap_or_default();
            out.push((number, target.trim().to_owned()));
            rest = &after[target.len()..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let root = repo_root();
    let mut files = Vec::new();
    files_with_extension(&root, "md", &mut files);
    files.sort();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("docs/reference/bridge.md")),
        "the walk found the docs"
    );
    let mut errors = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a Markdown file");
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a file's directory").join(path)
            };
            if !resolved.exists() {
                errors.push(format!("{shown}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(fragment) = fragment
                && resolved.extension().is_some_and(|e| e == "md")
            {
                let target_text = std::fs::read_to_string(&resolved).expect("read a link target");
                if !anchors(&target_text).contains(fragment) {
                    errors.push(format!("{shown}:{line}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_readme_is_short_and_links_every_page() {
    let root = repo_root();
    let size = std::fs::metadata(root.join("README.md"))
        .expect("README.md")
        .len();
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, more than {README_MAX_BYTES}: move the details to a page under docs/"
    );
    let readme = read("README.md");
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap_or_default().to_owned())
        .collect();
    let mut pages = Vec::new();
    files_with_extension(&root.join("docs"), "md", &mut pages);
    let missing: Vec<String> = pages
        .iter()
        .filter_map(|p| p.strip_prefix(&root).ok())
        .map(|p| p.display().to_string())
        .filter(|p| !linked.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not link {}",
        missing.join(", ")
    );
    for page in ["CONTRIBUTING.md", "SECURITY.md"] {
        assert!(linked.contains(page), "README.md does not link {page}");
    }
}

#[test]
fn the_help_parser_reads_flags_environment_and_subcommands() {
    let help = parse_help(
        "Usage: x [OPTIONS] <COMMAND>\n\nCommands:\n  run   Run it\n  help  Print this\n\n\
         Options:\n      --config <CONFIG>\n          A file\n          \n          [env: X_CONFIG=]\n\n\
         \x20 -q, --quiet\n          Quiet\n\n      --token <T>\n          [env: X_TOKEN]\n",
    );
    assert_eq!(help.subcommands, ["run"]);
    let flags: Vec<(&str, Vec<&str>)> = help
        .flags
        .iter()
        .map(|(f, e)| (f.as_str(), e.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        flags,
        [
            ("config", vec!["X_CONFIG"]),
            ("quiet", vec![]),
            ("token", vec!["X_TOKEN"])
        ]
    );
    assert_eq!(
        flags_in("`--isolate`, `--max-children N` (`A_B`) no--flag"),
        ["isolate", "max-children"]
    );
    assert_eq!(
        first_cell("| `--auth oauth\\|bearer` | x |").as_deref(),
        Some(" `--auth oauth|bearer` ")
    );
    assert_eq!(
        anchors(
            "# A stable URL: `bridge login`\n## 2024-11-05 HTTP+SSE\n## `relay serve --config`\n"
        ),
        BTreeSet::from([
            "a-stable-url-bridge-login".to_owned(),
            "2024-11-05-httpsse".to_owned(),
            "relay-serve---config".to_owned()
        ])
    );
}
