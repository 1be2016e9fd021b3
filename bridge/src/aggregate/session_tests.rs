//! The aggregate session's rules, each checked by feeding it lines from the core and from
//! members and reading what it wrote.

use serde_json::{Value, json};

use super::Session;

/// Lines written since the last look: (to the core, to members by index).
fn out(s: &mut Session) -> (Vec<Value>, Vec<(usize, Value)>) {
    let (core, members) = s.take_output();
    let parse = |l: &[u8]| serde_json::from_slice::<Value>(l).expect("JSON lines");
    (
        core.iter().map(|l| parse(l)).collect(),
        members.iter().map(|(m, l)| (*m, parse(l))).collect(),
    )
}

fn core(s: &mut Session, msg: Value) {
    s.on_core_line(msg.to_string().as_bytes());
}

fn member(s: &mut Session, m: usize, msg: Value) {
    s.on_member_line(m, msg.to_string().as_bytes());
}

fn result(id: &Value, r: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": r })
}

fn init_result(name: &str, caps: Value, instructions: &str) -> Value {
    json!({ "protocolVersion": "2025-06-18", "capabilities": caps,
            "serverInfo": { "name": name, "version": "1" }, "instructions": instructions })
}

/// A session of `names`, each member initialized with its `caps`.
fn started_with(names: &[&str], caps: &[Value]) -> Session {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut s = Session::new("work", &names);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                          "clientInfo": {"name": "bridge", "version": "1"}}}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), names.len(), "initialize goes to every member");
    for (m, req) in &sent {
        assert_eq!(req["method"], "initialize");
        let name = &names[*m];
        let init = init_result(name, caps[*m].clone(), &format!("use {name}"));
        member(&mut s, *m, result(&req["id"], init));
    }
    s
}

/// A session of "files" (tools, resources) and "github" (tools, prompts), both up.
fn started() -> Session {
    started_with(
        &["files", "github"],
        &[
            json!({"tools": {}, "resources": {"subscribe": true}}),
            json!({"tools": {"listChanged": true}, "prompts": {}}),
        ],
    )
}

/// [`started`], with the tools listed once: files' `read_file`, github's `issue`.
fn listed() -> Session {
    let mut s = started();
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let (_, sent) = out(&mut s);
    answer_lists(
        &mut s,
        &sent,
        &[vec![tool("read_file")], vec![tool("issue")]],
    );
    out(&mut s);
    s
}

fn tool(name: &str) -> Value {
    json!({ "name": name, "inputSchema": { "type": "object" } })
}

/// Answers every `tools/list` written to members with `lists[member]` (one page each).
fn answer_lists(s: &mut Session, sent: &[(usize, Value)], lists: &[Vec<Value>]) {
    for (m, req) in sent {
        if req["method"] == "tools/list" {
            member(s, *m, result(&req["id"], json!({ "tools": lists[*m] })));
        }
    }
}

#[test]
fn initialize_answers_the_union_of_the_members() {
    let mut s = started();
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core.len(), 1);
    let r = &to_core[0]["result"];
    assert_eq!(to_core[0]["id"], 1);
    assert_eq!(r["serverInfo"]["name"], "work");
    assert!(r["capabilities"]["prompts"].is_object());
    assert_eq!(r["capabilities"]["resources"]["subscribe"], true);
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true);
    let instructions = r["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("## files\n\nuse files"),
        "{instructions}"
    );
    assert!(
        instructions.contains("## github\n\nuse github"),
        "{instructions}"
    );
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent.iter().map(|(m, _)| *m).collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn a_member_that_refuses_initialize_is_left_out() {
    let mut s = Session::new("work", &["a".into(), "b".into()]);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    );
    let (_, sent) = out(&mut s);
    member(
        &mut s,
        sent[0].0,
        json!({"jsonrpc": "2.0", "id": sent[0].1["id"],
                                      "error": {"code": -32603, "message": "broken"}}),
    );
    member(
        &mut s,
        sent[1].0,
        result(&sent[1].1["id"], init_result("b", json!({"tools": {}}), "")),
    );
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core[0]["result"]["serverInfo"]["name"], "work");
    assert_eq!(s.down(), [("a", "broken")]);

    let mut s = Session::new("work", &["a".into()]);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    );
    s.member_gone(0, "exit status: 1");
    let (to_core, _) = out(&mut s);
    let msg = to_core[0]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("a: exit status: 1"), "{msg}");
}

#[test]
fn tools_of_every_page_are_listed_under_public_names_and_calls_are_routed() {
    let mut s = started();
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let (to_core, sent) = out(&mut s);
    assert!(to_core.is_empty(), "answered once every member answered");
    // files answers in two pages, github in one.
    for (m, req) in &sent {
        let page = match m {
            0 => json!({"tools": [tool("read_file")], "nextCursor": "p2"}),
            _ => json!({"tools": [tool("create.issue")]}),
        };
        member(&mut s, *m, result(&req["id"], page));
    }
    let (to_core, sent) = out(&mut s);
    assert!(to_core.is_empty());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["params"]["cursor"], "p2");
    member(
        &mut s,
        0,
        result(&sent[0].1["id"], json!({"tools": [tool("write_file")]})),
    );
    let (to_core, _) = out(&mut s);
    let names: Vec<&str> = to_core[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["files_read_file", "files_write_file", "github_create_issue"]
    );
    assert_eq!(to_core[0]["id"], 2);
    assert!(to_core[0]["result"].get("nextCursor").is_none());

    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "github_create_issue", "arguments": {"t": 1}}}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 1, "to github");
    assert_eq!(
        sent[0].1["params"]["name"], "create.issue",
        "under its own name"
    );
    assert_eq!(sent[0].1["id"], 3, "the core's id passes unchanged");
    let answer = result(&json!(3), json!({"content": []}));
    member(&mut s, 1, answer.clone());
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core, [answer]);
}

#[test]
fn a_call_before_any_list_reads_the_lists_first() {
    let mut s = started();
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                        "params": {"name": "files_read_file"}}),
    );
    let (to_core, sent) = out(&mut s);
    assert!(to_core.is_empty());
    answer_lists(&mut s, &sent, &[vec![tool("read_file")], vec![tool("x")]]);
    let (to_core, sent) = out(&mut s);
    assert!(to_core.is_empty(), "the list is not answered to anyone");
    assert_eq!(sent[0].0, 0);
    assert_eq!(sent[0].1["params"]["name"], "read_file");
    // An unknown public name.
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                        "params": {"name": "read_file"}}),
    );
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core[0]["error"]["code"], -32602);
}

#[test]
fn a_members_request_to_the_client_goes_back_to_that_member() {
    let mut s = started();
    out(&mut s);
    member(
        &mut s,
        1,
        json!({"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage",
                             "params": {}}),
    );
    let (to_core, _) = out(&mut s);
    let ours = to_core[0]["id"].clone();
    assert!(
        ours.as_str().is_some_and(|i| i.starts_with("agg-")),
        "{ours}"
    );
    core(&mut s, result(&ours, json!({"role": "assistant"})));
    let (_, sent) = out(&mut s);
    assert_eq!(sent, [(1, result(&json!(7), json!({"role": "assistant"})))]);
    // An answer to an unknown id goes nowhere.
    core(&mut s, result(&ours, json!({})));
    assert_eq!(out(&mut s).1, []);
}

#[test]
fn a_member_that_stops_leaves_the_others_usable() {
    let mut s = listed();
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "files_read_file"}}),
    );
    out(&mut s);
    s.member_gone(0, "exit status: 1");
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core[0]["id"], 3, "the call in flight is answered");
    assert!(
        to_core[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("files")
    );
    assert_eq!(to_core[1]["method"], "notifications/tools/list_changed");

    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), 1, "only github is asked");
    answer_lists(&mut s, &sent, &[vec![], vec![tool("issue")]]);
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core[0]["result"]["tools"][0]["name"], "github_issue");
    assert_eq!(to_core[0]["result"]["tools"].as_array().unwrap().len(), 1);
}

#[test]
fn a_call_of_a_tool_whose_member_is_down_is_a_tool_error() {
    let mut s = listed();
    // Down while the names are known (a list read earlier, kept by the client).
    s.member_gone(0, "not reachable");
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    );
    let (_, sent) = out(&mut s);
    answer_lists(&mut s, &sent, &[vec![], vec![tool("issue")]]);
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                        "params": {"name": "files_read_file"}}),
    );
    let (to_core, sent) = out(&mut s);
    assert!(sent.is_empty());
    assert_eq!(to_core[0]["id"], 4);
    assert_eq!(to_core[0]["result"]["isError"], true, "{}", to_core[0]);
    let text = to_core[0]["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("files") && text.contains("not reachable"),
        "{text}"
    );
}

#[test]
fn resources_go_to_the_member_that_listed_them() {
    let mut s = Session::new("work", &["b-docs".into(), "a-notes".into()]);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    );
    let (_, sent) = out(&mut s);
    for (m, req) in &sent {
        member(
            &mut s,
            *m,
            result(&req["id"], init_result("x", json!({"resources": {}}), "")),
        );
    }
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
                        "params": {"uri": "file:///shared"}}),
    );
    let (_, sent) = out(&mut s);
    for (m, req) in &sent {
        let list = match m {
            0 => {
                json!({"resources": [{"uri": "file:///shared", "name": "d"}, {"uri": "file:///docs", "name": "d2"}]})
            }
            _ => json!({"resources": [{"uri": "file:///shared", "name": "n"}]}),
        };
        member(&mut s, *m, result(&req["id"], list));
    }
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].0, 1,
        "a-notes, first by name, keeps a URI both list"
    );
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                        "params": {"uri": "file:///docs"}}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent[0].0, 0);

    // b-docs' copy of the shared URI is listed under a URI naming it, and read there.
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 4, "method": "resources/list"}),
    );
    let (_, sent) = out(&mut s);
    for (m, req) in &sent {
        let list = match m {
            0 => json!({"resources": [{"uri": "file:///shared", "name": "d"}]}),
            _ => json!({"resources": [{"uri": "file:///shared", "name": "n"}]}),
        };
        member(&mut s, *m, result(&req["id"], list));
    }
    let (to_core, _) = out(&mut s);
    let uris: Vec<&str> = to_core[0]["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    let theirs = "mcp-tunnel://b-docs/file%3A%2F%2F%2Fshared";
    assert_eq!(uris, ["file:///shared", theirs]);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 5, "method": "resources/read",
                        "params": {"uri": theirs}}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent[0].0, 0, "to b-docs");
    assert_eq!(
        sent[0].1["params"]["uri"], "file:///shared",
        "under its own URI"
    );
    member(
        &mut s,
        0,
        result(
            &json!(5),
            json!({"contents": [{"uri": "file:///shared", "text": "d"}]}),
        ),
    );
    let (to_core, _) = out(&mut s);
    assert_eq!(
        to_core[0]["result"]["contents"][0]["uri"], theirs,
        "answered under the public URI"
    );
    // Its updates too.
    member(
        &mut s,
        0,
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                             "params": {"uri": "file:///shared"}}),
    );
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core[0]["params"]["uri"], theirs);
}

#[test]
fn cancellations_and_log_levels_reach_the_right_members() {
    let mut s = listed();
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                        "params": {"name": "github_issue"}}),
    );
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 9}}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 1);

    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 10, "method": "logging/setLevel",
                        "params": {"level": "info"}}),
    );
    let (to_core, sent) = out(&mut s);
    assert!(to_core.is_empty());
    assert_eq!(sent.len(), 2);
    member(&mut s, sent[0].0, result(&sent[0].1["id"], json!({})));
    assert!(out(&mut s).0.is_empty(), "answered once both answered");
    member(&mut s, sent[1].0, result(&sent[1].1["id"], json!({})));
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core, [result(&json!(10), json!({}))]);
}

#[test]
fn a_member_cannot_answer_for_another() {
    let mut s = Session::new("work", &["a".into(), "b".into()]);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
    );
    let (_, sent) = out(&mut s);
    // b answers a's initialize id: ignored.
    let a_id = sent.iter().find(|(m, _)| *m == 0).unwrap().1["id"].clone();
    member(&mut s, 1, result(&a_id, init_result("evil", json!({}), "")));
    assert!(s.down().is_empty());
    assert!(out(&mut s).0.is_empty(), "still waiting for a");
}

#[test]
fn a_members_policy_applies_to_its_own_tools_before_naming() {
    let policy = crate::policy::PolicyConfig {
        deny_tools: vec!["write_*".into()],
        read_only_tools: vec!["read_*".into()],
        ..Default::default()
    };
    let mut s = started().with_policies(vec![Some(crate::policy::Policy::new(&policy)), None]);
    out(&mut s);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let (_, sent) = out(&mut s);
    answer_lists(
        &mut s,
        &sent,
        &[
            vec![tool("read_file"), tool("write_file")],
            vec![tool("write_issue")],
        ],
    );
    let (to_core, _) = out(&mut s);
    let tools = to_core[0]["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["files_read_file", "github_write_issue"],
        "files' policy hides its write_file, not github's write_issue"
    );
    assert_eq!(tools[0]["annotations"]["readOnlyHint"], true);
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "files_write_file"}}),
    );
    let (to_core, sent) = out(&mut s);
    assert!(sent.is_empty(), "a hidden tool is never called");
    assert_eq!(to_core[0]["error"]["code"], -32602);
}

#[test]
fn a_member_started_again_is_opened_and_its_tools_come_back() {
    let mut s = listed();
    s.member_gone(0, "exit status: 1");
    out(&mut s);
    s.member_back(0);
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 0);
    assert_eq!(
        sent[0].1["method"], "initialize",
        "opened as the core opened it"
    );
    member(
        &mut s,
        0,
        result(
            &sent[0].1["id"],
            init_result("files", json!({"tools": {}}), ""),
        ),
    );
    let (to_core, sent) = out(&mut s);
    assert_eq!(to_core[0]["method"], "notifications/tools/list_changed");
    assert_eq!(sent[0].1["method"], "notifications/initialized");
    assert!(s.down().is_empty());
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), 2, "both members are asked again");
}

#[test]
fn completions_go_to_the_member_behind_the_prompt() {
    let mut s = started();
    out(&mut s);
    let complete = json!({"jsonrpc": "2.0", "id": 3, "method": "completion/complete",
        "params": {"ref": {"type": "ref/prompt", "name": "github_triage"},
                   "argument": {"name": "repo", "value": "mc"}}});
    core(&mut s, complete.clone());
    let (_, sent) = out(&mut s);
    // The prompts are read first (github only offers prompts).
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["method"], "prompts/list");
    member(
        &mut s,
        1,
        result(&sent[0].1["id"], json!({"prompts": [{"name": "triage"}]})),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent[0].0, 1);
    assert_eq!(
        sent[0].1["params"]["ref"]["name"], "triage",
        "under its own name"
    );
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 4, "method": "completion/complete",
        "params": {"ref": {"type": "ref/prompt", "name": "nope"}}}),
    );
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core[0]["error"]["code"], -32602);
}

#[test]
fn an_answer_passes_as_written_and_only_from_the_member_asked() {
    let mut s = listed();
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "github_issue"}}),
    );
    out(&mut s);
    // files answers github's call: ignored.
    member(
        &mut s,
        0,
        result(
            &json!(3),
            json!({"content": [{"type": "text", "text": "forged"}]}),
        ),
    );
    assert!(
        out(&mut s).0.is_empty(),
        "a member cannot answer for another"
    );
    // github's answer reaches the core byte for byte (spacing and key order kept).
    let line =
        br#"{ "result" : {"content":[{"text":"ok","type":"text"}]}, "id":3, "jsonrpc":"2.0" }"#;
    s.on_member_line(1, line);
    let (to_core, _) = s.take_output();
    assert_eq!(to_core, [line.to_vec()]);
    // A progress notification passes as written too.
    let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":5,"progress":1}}"#;
    s.on_member_line(1, progress);
    assert_eq!(s.take_output().0, [progress.to_vec()]);
}

#[test]
fn a_widget_template_two_members_list_is_named_apart_in_their_tools_too() {
    let caps = json!({"tools": {}, "resources": {}});
    let mut s = started_with(&["maps", "notes"], &[caps.clone(), caps]);
    out(&mut s);
    let uri = "ui://widget/board.html";
    let widget_tool = |name: &str| {
        json!({ "name": name, "inputSchema": { "type": "object" },
                "_meta": { "openai/outputTemplate": uri, "ui": { "resourceUri": uri } } })
    };
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    let (to_core, sent) = out(&mut s);
    assert!(to_core.is_empty());
    answer_lists(
        &mut s,
        &sent,
        &[vec![widget_tool("show")], vec![widget_tool("board")]],
    );
    // The tools name a template: the resources are listed first, then the tools again.
    let (to_core, sent) = out(&mut s);
    assert!(to_core.is_empty(), "{to_core:?}");
    for (m, req) in &sent {
        assert_eq!(req["method"], "resources/list");
        member(
            &mut s,
            *m,
            result(
                &req["id"],
                json!({ "resources": [{ "uri": uri, "name": "board" }] }),
            ),
        );
    }
    let (_, sent) = out(&mut s);
    answer_lists(
        &mut s,
        &sent,
        &[vec![widget_tool("show")], vec![widget_tool("board")]],
    );
    let (to_core, _) = out(&mut s);
    assert_eq!(to_core.len(), 1, "{to_core:?}");
    assert_eq!(to_core[0]["id"], 2);
    let tools = to_core[0]["result"]["tools"].as_array().unwrap();
    let meta = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["_meta"].clone())
            .unwrap_or_else(|| panic!("{name} in {tools:?}"))
    };
    // "maps" comes first by name and keeps the URI; "notes" names its own template.
    assert_eq!(meta("maps_show")["openai/outputTemplate"], uri);
    let theirs = meta("notes_board");
    let public = theirs["openai/outputTemplate"].as_str().unwrap().to_owned();
    assert!(public.starts_with("ui://notes/"), "{public}");
    assert_eq!(theirs["ui"]["resourceUri"], public.as_str());
    // Reading that URI reaches the member that serves it, under its own URI.
    core(
        &mut s,
        json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": public}}),
    );
    let (_, sent) = out(&mut s);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 1);
    assert_eq!(sent[0].1["params"]["uri"], uri);
}
