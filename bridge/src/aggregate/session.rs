//! One aggregate session: several members behind one MCP server, as a plain state
//! machine (no I/O). The core writes lines to it as to one server ([`Session::on_core_line`]);
//! each member's lines come in with the member's index ([`Session::on_member_line`]), and a
//! member that stops is reported ([`Session::member_gone`]). What it wants written is
//! taken with [`Session::take_output`].
//!
//! Rules (see `docs/design/aggregation.md`):
//! - `initialize` goes to every member; the answer is their union (capabilities merged,
//!   the instructions of each member under its name, `serverInfo` naming the tunnel).
//!   A member whose `initialize` fails is down from then on.
//! - `tools/list` and `prompts/list` gather every page of every member that is up; names
//!   are made public by [`NameMap`]; the answer is one page. A call or `prompts/get` goes
//!   to the member behind the public name, under the member's own name; when no list was
//!   read yet in this session, the lists are read first.
//! - `resources/list` and `resources/templates/list` are gathered too; a resource goes to
//!   the member that listed its URI (the first member, by name, when several list it).
//! - The core's own requests pass to members with their ids unchanged (the core's ids are
//!   unique), so answers come back without a table lookup; the aggregate's own requests
//!   (gathering) carry string ids `"agg-N"`.
//! - A member's request to the client goes to the core with the id `"agg-N"`, and the
//!   client's answer back to the member under its own id; the member's cancellation of
//!   it is mapped the same way.
//! - A member that stops leaves the others usable: what was in flight on it is answered
//!   with an error, its tools leave the list (`tools/list_changed` is announced), and a
//!   call of one of them is a tool error naming the member.

use std::collections::{BTreeMap, HashMap, HashSet};

use protocol::jsonrpc::Kind;
use serde_json::{Map, Value, json};

use super::names::NameMap;
use super::uris::UriMap;
use crate::policy::Policy;

/// The members' notifications the aggregate changes or acts on (the others pass as
/// they are).
const MAPPED_NOTIFICATIONS: [&str; 5] = [
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/cancelled",
];

/// A line for a member: its index and the line.
pub type MemberLine = (usize, Vec<u8>);

/// JSON-RPC: method not found.
const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: invalid params.
const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: internal error.
const INTERNAL_ERROR: i64 = -32603;
/// Most pages read from one member for one list (a member that pages forever is cut).
const MAX_PAGES: usize = 100;

/// The lists a session gathers from its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum List {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    Templates,
}

impl List {
    fn method(self) -> &'static str {
        match self {
            List::Tools => "tools/list",
            List::Prompts => "prompts/list",
            List::Resources => "resources/list",
            List::Templates => "resources/templates/list",
        }
    }

    /// The key of the list in its result.
    fn key(self) -> &'static str {
        match self {
            List::Tools => "tools",
            List::Prompts => "prompts",
            List::Resources => "resources",
            List::Templates => "resourceTemplates",
        }
    }
}

/// How far a member got.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Its `initialize` is unanswered.
    Starting,
    /// It answered `initialize` with this result.
    Up(Value),
    /// It stopped, or refused `initialize`, for this reason.
    Down(String),
}

#[derive(Debug)]
struct Member {
    name: String,
    state: State,
}

/// What an id the aggregate sent to a member stands for.
#[derive(Debug)]
enum Own {
    /// This member's part of the core's `initialize`.
    Init,
    /// The `initialize` of a member that was restarted.
    Reinit,
    /// This member's page of a gathering.
    Page { gather: u64 },
    /// This member's part of a `logging/setLevel` fan-out.
    Fanout { core_id: Value },
}

/// A list being gathered from the members.
#[derive(Debug)]
struct Gather {
    list: List,
    /// Members still answering.
    waiting: HashSet<usize>,
    /// Pages read per member.
    pages: HashMap<usize, usize>,
    /// Entries per member.
    entries: BTreeMap<usize, Vec<Value>>,
    /// Members that answered with an error (their last names stay known, not listed).
    failed: HashSet<usize>,
    /// Who waits for it: the core's request (answered with the list), or requests of the
    /// core that need the names first (handled again once it is complete).
    for_core: Option<Value>,
    then: Vec<Value>,
}

/// The members' last lists, shared by the sessions of one tunnel.
#[derive(Debug, Clone, Default)]
pub struct Memory(std::sync::Arc<std::sync::Mutex<(Lists, HashSet<String>)>>);

/// Each member's entries of each list.
type Lists = HashMap<(List, usize), Vec<Value>>;

impl Memory {
    fn get(&self, list: List, member: usize) -> Option<Vec<Value>> {
        self.0.lock().ok()?.0.get(&(list, member)).cloned()
    }

    fn set(&self, list: List, member: usize, items: Vec<Value>) {
        if let Ok(mut m) = self.0.lock() {
            m.0.insert((list, member), items);
        }
    }

    /// Logs each renaming once per tunnel.
    fn report(&self, renamed: &[super::names::Renamed]) {
        let Ok(mut m) = self.0.lock() else { return };
        for r in renamed {
            let line = match r {
                super::names::Renamed::TooLong {
                    member,
                    name,
                    public,
                } => format!(
                    "the server {member}'s {name:?} is longer than a hosted client accepts: published as {public}"
                ),
                super::names::Renamed::Collision {
                    member,
                    name,
                    taken,
                    public,
                } => format!(
                    "the server {member}'s {name:?} would be {taken}, which another name took: published as {public}"
                ),
            };
            if m.1.insert(line.clone()) {
                tracing::info!("{line}");
            }
        }
    }
}

/// One aggregate session (see the module documentation).
#[derive(Debug)]
pub struct Session {
    tunnel: String,
    members: Vec<Member>,
    next: u64,
    own: HashMap<String, (usize, Own)>,
    gathers: HashMap<u64, Gather>,
    /// The core's requests in flight on a member, by their id (as JSON text).
    forwarded: HashMap<String, usize>,
    /// Members' requests to the client: the aggregate's id → (member, the member's id).
    server_requests: HashMap<String, (usize, Value)>,
    /// The `initialize` fan-out: core id → members still answering.
    initializing: Option<(Value, HashSet<usize>)>,
    /// The core's `initialize`, to open a restarted member the same way.
    init_request: Option<Value>,
    /// `logging/setLevel` fan-outs: core id (as JSON text) → members still answering.
    fanouts: HashMap<String, (Value, HashSet<usize>)>,
    tools: Option<NameMap>,
    prompts: Option<NameMap>,
    /// The resources' public URIs, from the resource lists.
    uris: Option<UriMap>,
    /// The core's `resources/read` in flight, by id: the member whose URIs to make public
    /// in the answer.
    reads: HashMap<String, usize>,
    /// Each member's last tools and prompts, so that a call of a tool whose member went
    /// down is answered as such (its tools are no longer listed); shared by the sessions
    /// of one tunnel, so a new session knows them too.
    last: Memory,
    /// Each member's own policy, applied to its tools before they are named.
    policies: Vec<Option<Policy>>,
    to_core: Vec<Vec<u8>>,
    to_members: Vec<MemberLine>,
}

impl Session {
    /// A session of `tunnel` over `members` (their names, in the configuration's order),
    /// sharing `memory` with the tunnel's other sessions.
    pub fn with_memory(tunnel: &str, members: &[String], memory: Memory) -> Self {
        let mut s = Self::new(tunnel, members);
        s.last = memory;
        s
    }

    /// The same session, each member's tools offered as its policy says (by index; a
    /// member without one offers every tool).
    pub fn with_policies(mut self, policies: Vec<Option<Policy>>) -> Self {
        self.policies = policies;
        self
    }

    /// A session of `tunnel` over `members` (their names, in the configuration's order).
    pub fn new(tunnel: &str, members: &[String]) -> Self {
        Self {
            tunnel: tunnel.to_owned(),
            members: members
                .iter()
                .map(|m| Member {
                    name: m.clone(),
                    state: State::Starting,
                })
                .collect(),
            next: 1,
            own: HashMap::new(),
            gathers: HashMap::new(),
            forwarded: HashMap::new(),
            server_requests: HashMap::new(),
            initializing: None,
            init_request: None,
            fanouts: HashMap::new(),
            tools: None,
            prompts: None,
            uris: None,
            reads: HashMap::new(),
            last: Memory::default(),
            policies: Vec::new(),
            to_core: Vec::new(),
            to_members: Vec::new(),
        }
    }

    /// Lines for the core, and lines for members (by index), produced so far.
    pub fn take_output(&mut self) -> (Vec<Vec<u8>>, Vec<MemberLine>) {
        (
            std::mem::take(&mut self.to_core),
            std::mem::take(&mut self.to_members),
        )
    }

    /// The names of the members that are down, with why.
    pub fn down(&self) -> Vec<(&str, &str)> {
        self.members
            .iter()
            .filter_map(|m| match &m.state {
                State::Down(why) => Some((m.name.as_str(), why.as_str())),
                _ => None,
            })
            .collect()
    }

    fn own_id(&mut self, member: usize, what: Own) -> Value {
        let id = format!("agg-{}", self.next);
        self.next += 1;
        self.own.insert(id.clone(), (member, what));
        Value::from(id)
    }

    fn up(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| matches!(self.members[i].state, State::Up(_)))
            .collect()
    }

    fn send(&mut self, member: usize, msg: &Value) {
        self.to_members.push((member, msg.to_string().into_bytes()));
    }

    fn answer(&mut self, id: &Value, result: Value) {
        let msg = json!({ "jsonrpc": "2.0", "id": id, "result": result });
        self.to_core.push(msg.to_string().into_bytes());
    }

    fn error(&mut self, id: &Value, code: i64, message: &str) {
        let msg =
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } });
        self.to_core.push(msg.to_string().into_bytes());
    }

    fn notify_core(&mut self, method: &str) {
        let msg = json!({ "jsonrpc": "2.0", "method": method });
        self.to_core.push(msg.to_string().into_bytes());
    }

    // ---- from the core ------------------------------------------------------------

    /// A line the core wrote to the server.
    pub fn on_core_line(&mut self, line: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let method = msg["method"].as_str().map(str::to_owned);
        match (method, msg.get("id").cloned()) {
            (Some(m), Some(id)) => self.core_request(&m, id, msg),
            (Some(m), None) => self.core_notification(&m, msg),
            (None, Some(id)) => self.core_answer(id, msg),
            (None, None) => {}
        }
    }

    fn core_request(&mut self, method: &str, id: Value, msg: Value) {
        match method {
            "initialize" => self.start(id, &msg),
            "ping" => self.answer(&id, json!({})),
            "tools/list" => self.gather(List::Tools, Some(id), None),
            "prompts/list" => self.gather(List::Prompts, Some(id), None),
            "resources/list" => self.gather(List::Resources, Some(id), None),
            "resources/templates/list" => self.gather(List::Templates, Some(id), None),
            "tools/call" | "prompts/get" => self.by_name(method, id, msg),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.by_uri(id, msg)
            }
            "completion/complete" => self.complete(id, msg),
            "logging/setLevel" => {
                let up = self.up();
                if up.is_empty() {
                    return self.answer(&id, json!({}));
                }
                let mut waiting = HashSet::new();
                for m in up {
                    let own = self.own_id(
                        m,
                        Own::Fanout {
                            core_id: id.clone(),
                        },
                    );
                    let mut req = msg.clone();
                    req["id"] = own;
                    self.send(m, &req);
                    waiting.insert(m);
                }
                self.fanouts.insert(id.to_string(), (id, waiting));
            }
            _ => match self.up().as_slice() {
                // One member up: what the aggregate does not know goes to it as is.
                [only] => {
                    let only = *only;
                    self.forward(only, id, msg);
                }
                _ => self.error(
                    &id,
                    METHOD_NOT_FOUND,
                    &format!("{method} is not offered by this aggregated tunnel"),
                ),
            },
        }
    }

    fn forward(&mut self, member: usize, id: Value, msg: Value) {
        self.forwarded.insert(id.to_string(), member);
        self.send(member, &msg);
    }

    fn start(&mut self, id: Value, msg: &Value) {
        self.init_request = Some(msg.clone());
        let mut waiting = HashSet::new();
        for m in 0..self.members.len() {
            if matches!(self.members[m].state, State::Down(_)) {
                continue;
            }
            let own = self.own_id(m, Own::Init);
            let mut req = msg.clone();
            req["id"] = own;
            self.send(m, &req);
            waiting.insert(m);
        }
        self.initializing = Some((id, waiting));
        self.finish_start();
    }

    fn finish_start(&mut self) {
        let done = self
            .initializing
            .as_ref()
            .is_some_and(|(_, waiting)| waiting.is_empty());
        if !done {
            return;
        }
        let Some((id, _)) = self.initializing.take() else {
            return;
        };
        let results: Vec<(&str, &Value)> = self
            .members
            .iter()
            .filter_map(|m| match &m.state {
                State::Up(r) => Some((m.name.as_str(), r)),
                _ => None,
            })
            .collect();
        if results.is_empty() {
            let why: Vec<String> = self
                .down()
                .iter()
                .map(|(m, w)| format!("{m}: {w}"))
                .collect();
            let msg = format!("no server of this tunnel started ({})", why.join("; "));
            return self.error(&id, INTERNAL_ERROR, &msg);
        }
        let union = union_of(&self.tunnel, &results);
        self.answer(&id, union);
    }

    fn core_notification(&mut self, method: &str, msg: Value) {
        match method {
            "notifications/cancelled" => {
                let key = msg["params"]["requestId"].to_string();
                if let Some(&m) = self.forwarded.get(&key) {
                    self.send(m, &msg);
                }
            }
            _ => {
                for m in self.up() {
                    self.send(m, &msg);
                }
            }
        }
    }

    fn core_answer(&mut self, id: Value, mut msg: Value) {
        let Some(key) = id.as_str() else { return };
        let Some((member, their_id)) = self.server_requests.remove(key) else {
            return;
        };
        msg["id"] = their_id;
        self.send(member, &msg);
    }

    // ---- names and URIs ------------------------------------------------------------

    fn by_name(&mut self, method: &str, id: Value, mut msg: Value) {
        let list = if method == "tools/call" {
            List::Tools
        } else {
            List::Prompts
        };
        let map = match list {
            List::Tools => self.tools.as_ref(),
            _ => self.prompts.as_ref(),
        };
        let Some(map) = map else {
            // No list read yet in this session: read it, then route.
            return self.gather(list, None, Some(msg));
        };
        let public = msg["params"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some((member, name)) = map
            .member_of(&public)
            .map(|(m, n)| (m.to_owned(), n.to_owned()))
        else {
            return self.error(
                &id,
                INVALID_PARAMS,
                &format!("unknown {}: {public}", kind_word(list)),
            );
        };
        let Some(m) = self.members.iter().position(|x| x.name == member) else {
            return self.error(&id, INTERNAL_ERROR, "unknown member");
        };
        if matches!(self.members[m].state, State::Down(_)) {
            // Why it is down stays local (the owner's log).
            let text = format!(
                "the server {member} behind this tunnel is not running or not reachable; its tools are unavailable until it is back"
            );
            return if list == List::Tools {
                self.answer(
                    &id,
                    json!({ "content": [{ "type": "text", "text": text }], "isError": true }),
                )
            } else {
                self.error(&id, INTERNAL_ERROR, &text)
            };
        }
        msg["params"]["name"] = Value::from(name);
        self.forward(m, id, msg);
    }

    /// `completion/complete`: to the member behind the prompt's public name, or the
    /// resource's URI.
    fn complete(&mut self, id: Value, mut msg: Value) {
        let reference = &msg["params"]["ref"];
        let target = match reference["type"].as_str() {
            Some("ref/prompt") => {
                let Some(map) = &self.prompts else {
                    return self.gather(List::Prompts, None, Some(msg));
                };
                let public = reference["name"].as_str().unwrap_or_default();
                map.member_of(public)
                    .map(|(m, n)| (m.to_owned(), "name", n.to_owned()))
            }
            Some("ref/resource") => {
                let Some(map) = &self.uris else {
                    return self.gather(List::Resources, None, Some(msg));
                };
                let public = reference["uri"].as_str().unwrap_or_default();
                map.member_of(public)
                    .map(|(m, u)| (self.members[m].name.clone(), "uri", u.to_owned()))
            }
            _ => None,
        };
        let Some((member, key, own)) = target else {
            return self.error(&id, INVALID_PARAMS, "unknown completion reference");
        };
        let Some(m) = self.members.iter().position(|x| x.name == member) else {
            return self.error(&id, INVALID_PARAMS, "unknown completion reference");
        };
        if matches!(self.members[m].state, State::Down(_)) {
            let msg = format!("the server {member} behind this tunnel is not running");
            return self.error(&id, INTERNAL_ERROR, &msg);
        }
        msg["params"]["ref"][key] = Value::from(own);
        self.forward(m, id, msg);
    }

    fn by_uri(&mut self, id: Value, mut msg: Value) {
        let Some(uris) = &self.uris else {
            return self.gather(List::Resources, None, Some(msg));
        };
        let uri = msg["params"]["uri"].as_str().unwrap_or_default().to_owned();
        let known = uris.member_of(&uri).map(|(m, own)| (m, own.to_owned()));
        if let Some((_, own)) = &known {
            msg["params"]["uri"] = Value::from(own.as_str());
        }
        let member = known.map(|(m, _)| m).or_else(|| {
            // A URI no list named (a templated one): the only member with resources.
            let with: Vec<usize> = self
                .up()
                .into_iter()
                .filter(|&m| self.capability(m, "resources"))
                .collect();
            (with.len() == 1).then(|| with[0])
        });
        match member {
            Some(m) if !matches!(self.members[m].state, State::Down(_)) => {
                if msg["method"] == "resources/read" {
                    self.reads.insert(id.to_string(), m);
                }
                self.forward(m, id, msg)
            }
            Some(m) => {
                let msg = format!(
                    "the server {} behind this tunnel is not running",
                    self.members[m].name
                );
                self.error(&id, INTERNAL_ERROR, &msg)
            }
            None => self.error(&id, INVALID_PARAMS, &format!("unknown resource: {uri}")),
        }
    }

    fn capability(&self, member: usize, what: &str) -> bool {
        match &self.members[member].state {
            State::Up(r) => r["capabilities"].get(what).is_some(),
            _ => false,
        }
    }

    // ---- gathering lists ---------------------------------------------------------

    fn gather(
        &mut self,
        list: List,
        for_core: Option<Value>,
        then: impl IntoIterator<Item = Value>,
    ) {
        let cap = match list {
            List::Tools => "tools",
            List::Prompts => "prompts",
            List::Resources | List::Templates => "resources",
        };
        let members: Vec<usize> = self
            .up()
            .into_iter()
            .filter(|&m| self.capability(m, cap))
            .collect();
        let key = self.next;
        self.next += 1;
        let mut g = Gather {
            list,
            waiting: members.iter().copied().collect(),
            pages: HashMap::new(),
            entries: BTreeMap::new(),
            failed: HashSet::new(),
            for_core,
            then: then.into_iter().collect(),
        };
        for &m in &members {
            g.pages.insert(m, 1);
        }
        self.gathers.insert(key, g);
        for m in members {
            self.ask_page(key, m, list, None);
        }
        self.finish_gather(key);
    }

    fn ask_page(&mut self, gather: u64, member: usize, list: List, cursor: Option<Value>) {
        let id = self.own_id(member, Own::Page { gather });
        let mut req = json!({ "jsonrpc": "2.0", "id": id, "method": list.method() });
        if let Some(c) = cursor {
            req["params"] = json!({ "cursor": c });
        }
        self.send(member, &req);
    }

    fn page(&mut self, gather: u64, member: usize, msg: &Value) {
        let Some(g) = self.gathers.get_mut(&gather) else {
            return;
        };
        let list = g.list;
        if msg.get("error").is_some() {
            g.failed.insert(member);
        }
        if let Some(items) = msg["result"][list.key()].as_array() {
            let mut items = items.clone();
            if list == List::Tools
                && let Some(Some(p)) = self.policies.get(member)
            {
                // Hidden tools leave the list (and so the names: a call is unknown);
                // annotation overrides apply.
                let mut r = json!({ "tools": items });
                p.rewrite_tools(&mut r);
                items = r["tools"].as_array().cloned().unwrap_or_default();
            }
            g.entries.entry(member).or_default().extend(items);
        }
        let cursor = msg["result"]
            .get("nextCursor")
            .filter(|c| !c.is_null())
            .cloned();
        let pages = g.pages.entry(member).or_insert(1);
        match cursor {
            Some(c) if *pages < MAX_PAGES => {
                *pages += 1;
                self.ask_page(gather, member, list, Some(c));
            }
            _ => {
                g.waiting.remove(&member);
                self.finish_gather(gather);
            }
        }
    }

    fn finish_gather(&mut self, key: u64) {
        if self.gathers.get(&key).is_none_or(|g| !g.waiting.is_empty()) {
            return;
        }
        let Some(g) = self.gathers.remove(&key) else {
            return;
        };
        if g.list == List::Tools
            && self.uris.is_none()
            && g.for_core.is_some()
            && g.entries
                .values()
                .flatten()
                .any(|t| !templates(t).is_empty())
            && self
                .up()
                .into_iter()
                .any(|m| self.capability(m, "resources"))
        {
            // A tool names a widget template: its public URI comes from the resource
            // list (two members may list the same one). List the resources, then the
            // tools again.
            let again = json!({ "jsonrpc": "2.0", "id": g.for_core, "method": "tools/list" });
            return self.gather(List::Resources, None, std::iter::once(again).chain(g.then));
        }
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        let result = match g.list {
            List::Tools | List::Prompts => {
                for (m, items) in &g.entries {
                    if !g.failed.contains(m) {
                        self.last.set(g.list, *m, items.clone());
                    }
                }
                // Names of members that are down stay known (not listed): a call of one
                // is answered as a tool of a server that is down.
                let mut known = g.entries.clone();
                for m in 0..self.members.len() {
                    let away = g.failed.contains(&m) && !g.entries.contains_key(&m);
                    if (away || matches!(self.members[m].state, State::Down(_)))
                        && let Some(items) = self.last.get(g.list, m)
                    {
                        known.insert(m, items);
                    }
                }
                let map = NameMap::new(known.iter().flat_map(|(m, items)| {
                    let member = names[*m].as_str();
                    items
                        .iter()
                        .filter_map(move |i| i["name"].as_str().map(|n| (member, n)))
                }));
                let mut out = Vec::new();
                for (m, items) in &g.entries {
                    for item in items {
                        let Some(name) = item["name"].as_str() else {
                            continue;
                        };
                        let mut item = item.clone();
                        if let Some(p) = map.public(&names[*m], name) {
                            item["name"] = Value::from(p);
                        }
                        if let Some(uris) = &self.uris {
                            publish_templates(&mut item, uris, *m);
                        }
                        out.push(item);
                    }
                }
                self.last.report(map.renamed());
                if g.list == List::Tools {
                    self.tools = Some(map);
                } else {
                    self.prompts = Some(map);
                }
                json!({ g.list.key(): out })
            }
            List::Resources => {
                // Members in the order of their names: the first keeps a URI both list.
                let mut order: Vec<usize> = g.entries.keys().copied().collect();
                order.sort_by(|a, b| names[*a].cmp(&names[*b]));
                let map = UriMap::new(order.iter().flat_map(|m| {
                    let name = names[*m].as_str();
                    g.entries[m]
                        .iter()
                        .filter_map(move |i| i["uri"].as_str().map(|u| (*m, name, u)))
                }));
                let mut out = Vec::new();
                for m in order {
                    for item in &g.entries[&m] {
                        let mut item = item.clone();
                        if let Some(uri) = item["uri"].as_str() {
                            let public = map.public(m, uri).to_owned();
                            item["uri"] = Value::from(public);
                        }
                        out.push(item);
                    }
                }
                self.uris = Some(map);
                json!({ "resources": out })
            }
            List::Templates => {
                let out: Vec<Value> = g.entries.values().flatten().cloned().collect();
                json!({ "resourceTemplates": out })
            }
        };
        if let Some(id) = g.for_core {
            self.answer(&id, result);
        }
        for msg in g.then {
            self.on_core_line(msg.to_string().as_bytes());
        }
    }

    // ---- from members ------------------------------------------------------------

    /// A line member `member` wrote.
    pub fn on_member_line(&mut self, member: usize, line: &[u8]) {
        // The envelope first (a fast scan): an answer to the core's own request and a
        // notification the aggregate does not map pass as they are, without parsing a
        // large result into a tree and writing it again.
        let Ok(env) = protocol::scan::parse_fast(line) else {
            return;
        };
        match (env.kind, env.id.clone(), env.method.as_deref()) {
            (Kind::Response, Some(span), _) => {
                let key = String::from_utf8_lossy(&line[span]).into_owned();
                if self.forwarded.get(&key) == Some(&member) && !self.reads.contains_key(&key) {
                    self.forwarded.remove(&key);
                    self.to_core.push(line.to_vec());
                    return;
                }
            }
            (Kind::Notification, _, Some(method)) if !MAPPED_NOTIFICATIONS.contains(&method) => {
                self.to_core.push(line.to_vec());
                return;
            }
            _ => {}
        }
        let Ok(msg) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let method = msg["method"].as_str().map(str::to_owned);
        match (method, msg.get("id").cloned()) {
            (None, Some(id)) => self.member_answer(member, id, msg),
            (Some(_), Some(id)) => {
                // A request to the client: it goes on under an id of the aggregate's.
                let agg = format!("agg-{}", self.next);
                self.next += 1;
                self.server_requests.insert(agg.clone(), (member, id));
                let mut msg = msg;
                msg["id"] = Value::from(agg);
                self.to_core.push(msg.to_string().into_bytes());
            }
            (Some(m), None) => self.member_notification(member, &m, msg),
            (None, None) => {}
        }
    }

    fn member_answer(&mut self, member: usize, id: Value, msg: Value) {
        if let Some(key) = id.as_str()
            && self.own.get(key).is_some_and(|(m, _)| *m == member)
            && let Some((_, own)) = self.own.remove(key)
        {
            return match own {
                Own::Init => {
                    self.members[member].state = match msg.get("result") {
                        Some(r) if r.is_object() => State::Up(r.clone()),
                        _ => State::Down(
                            msg["error"]["message"]
                                .as_str()
                                .unwrap_or("it refused initialize")
                                .to_owned(),
                        ),
                    };
                    if let Some((_, waiting)) = &mut self.initializing {
                        waiting.remove(&member);
                    }
                    self.finish_start();
                }
                Own::Reinit => {
                    let Some(r) = msg.get("result").filter(|r| r.is_object()) else {
                        self.members[member].state = State::Down(
                            msg["error"]["message"]
                                .as_str()
                                .unwrap_or("it refused initialize")
                                .to_owned(),
                        );
                        return;
                    };
                    self.members[member].state = State::Up(r.clone());
                    let initialized =
                        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
                    self.send(member, &initialized);
                    // Its tools are back.
                    self.tools = None;
                    self.prompts = None;
                    self.uris = None;
                    self.notify_core("notifications/tools/list_changed");
                }
                Own::Page { gather } => self.page(gather, member, &msg),
                Own::Fanout { core_id } => self.fanout_done(member, &core_id),
            };
        }
        // Only the member a request went to may answer it.
        let key = id.to_string();
        if self.forwarded.get(&key) == Some(&member) {
            self.forwarded.remove(&key);
            let mut msg = msg;
            if let Some(m) = self.reads.remove(&key)
                && let (Some(map), Some(contents)) =
                    (&self.uris, msg["result"]["contents"].as_array_mut())
            {
                for c in contents {
                    if let Some(uri) = c["uri"].as_str() {
                        let public = map.public(m, uri).to_owned();
                        c["uri"] = Value::from(public);
                    }
                }
            }
            self.to_core.push(msg.to_string().into_bytes());
        }
    }

    fn fanout_done(&mut self, member: usize, core_id: &Value) {
        let key = core_id.to_string();
        let Some((_, waiting)) = self.fanouts.get_mut(&key) else {
            return;
        };
        waiting.remove(&member);
        if waiting.is_empty()
            && let Some((id, _)) = self.fanouts.remove(&key)
        {
            self.answer(&id, json!({}));
        }
    }

    fn member_notification(&mut self, member: usize, method: &str, mut msg: Value) {
        match method {
            "notifications/tools/list_changed" => self.tools = None,
            "notifications/prompts/list_changed" => self.prompts = None,
            "notifications/resources/list_changed" => self.uris = None,
            "notifications/resources/updated" => {
                if let (Some(map), Some(uri)) = (&self.uris, msg["params"]["uri"].as_str()) {
                    let public = map.public(member, uri).to_owned();
                    msg["params"]["uri"] = Value::from(public);
                }
            }
            "notifications/cancelled" => {
                // The member withdraws its request to the client.
                let theirs = msg["params"]["requestId"].clone();
                let ours = self
                    .server_requests
                    .iter()
                    .find(|(_, (m, id))| *m == member && *id == theirs)
                    .map(|(k, _)| k.clone());
                match ours {
                    Some(k) => {
                        self.server_requests.remove(&k);
                        msg["params"]["requestId"] = Value::from(k);
                    }
                    None => return,
                }
            }
            _ => {}
        }
        self.to_core.push(msg.to_string().into_bytes());
    }

    /// Member `member` was started again (after [`Session::member_gone`]): it is opened
    /// with the core's `initialize`, and its tools are listed again once it answered.
    /// Before the session's own `initialize`, nothing is sent (that one opens it).
    pub fn member_back(&mut self, member: usize) {
        let Some(mut req) = self.init_request.clone() else {
            if let Some(m) = self.members.get_mut(member) {
                m.state = State::Starting;
            }
            return;
        };
        let Some(m) = self.members.get_mut(member) else {
            return;
        };
        m.state = State::Starting;
        req["id"] = self.own_id(member, Own::Reinit);
        self.send(member, &req);
    }

    /// Member `member` stopped (it exited, or its server cannot be reached).
    pub fn member_gone(&mut self, member: usize, why: &str) {
        let Some(m) = self.members.get_mut(member) else {
            return;
        };
        let was_up = matches!(m.state, State::Up(_));
        m.state = State::Down(why.to_owned());
        let name = m.name.clone();
        let gone: Vec<String> = self
            .forwarded
            .iter()
            .filter(|(_, m)| **m == member)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.forwarded.remove(&key);
            self.reads.remove(&key);
            if let Ok(id) = serde_json::from_str::<Value>(&key) {
                let msg = format!("the server {name} behind this tunnel stopped");
                self.error(&id, INTERNAL_ERROR, &msg);
            }
        }
        self.server_requests.retain(|_, (m, _)| *m != member);
        let keys: Vec<String> = self
            .own
            .iter()
            .filter(|(_, (m, _))| *m == member)
            .map(|(k, _)| k.clone())
            .collect();
        let owned: Vec<Own> = keys
            .iter()
            .filter_map(|k| self.own.remove(k).map(|(_, o)| o))
            .collect();
        for own in owned {
            match own {
                Own::Reinit => {}
                Own::Init => {
                    if let Some((_, waiting)) = &mut self.initializing {
                        waiting.remove(&member);
                    }
                    self.finish_start();
                }
                Own::Page { gather } => {
                    if let Some(g) = self.gathers.get_mut(&gather) {
                        g.waiting.remove(&member);
                        g.entries.remove(&member);
                    }
                    self.finish_gather(gather);
                }
                Own::Fanout { core_id } => self.fanout_done(member, &core_id),
            }
        }
        if was_up {
            self.tools = None;
            self.prompts = None;
            self.uris = None;
            self.notify_core("notifications/tools/list_changed");
        }
    }
}

fn kind_word(list: List) -> &'static str {
    match list {
        List::Tools => "tool",
        _ => "prompt",
    }
}

/// The `initialize` result of the members' union.
fn union_of(tunnel: &str, results: &[(&str, &Value)]) -> Value {
    let mut caps = Map::new();
    for (_, r) in results {
        if let Some(c) = r["capabilities"].as_object() {
            for (k, v) in c {
                match (caps.get_mut(k), v) {
                    (Some(Value::Object(have)), Value::Object(more)) => {
                        for (k2, v2) in more {
                            // A feature any member has (`listChanged`, `subscribe`) is on.
                            if v2 == &Value::Bool(true) || !have.contains_key(k2) {
                                have.insert(k2.clone(), v2.clone());
                            }
                        }
                    }
                    (None, _) => {
                        caps.insert(k.clone(), v.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    // Lists change when a member goes or comes back.
    for k in ["tools", "prompts", "resources"] {
        if let Some(Value::Object(c)) = caps.get_mut(k) {
            c.insert("listChanged".into(), Value::Bool(true));
        }
    }
    let instructions: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| {
            r["instructions"]
                .as_str()
                .filter(|i| !i.trim().is_empty())
                .map(|i| format!("## {name}\n\n{i}"))
        })
        .collect();
    // The lowest protocol version of the members: what all of them agreed to.
    let version = results
        .iter()
        .filter_map(|(_, r)| r["protocolVersion"].as_str())
        .min()
        .unwrap_or(protocol::LATEST_LEGACY_MCP_VERSION);
    let mut out = json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": { "name": tunnel, "version": env!("CARGO_PKG_VERSION") },
    });
    if !instructions.is_empty() {
        out["instructions"] = Value::from(instructions.join("\n\n"));
    }
    // The members' names, the prefixes of the public names (`bridge doctor` reads them).
    let names: Vec<&str> = results.iter().map(|(n, _)| *n).collect();
    out["_meta"] = json!({ SERVERS_META: names });
    out
}

/// The `_meta` key of an aggregated tunnel's `initialize` result listing its servers.
pub const SERVERS_META: &str = "mcp-tunnel/servers";

/// Where a tool's `_meta` names its widget template: the Apps SDK's
/// `openai/outputTemplate`, MCP Apps' `ui.resourceUri` (and its older flat key).
const TEMPLATE_POINTERS: [&str; 3] = [
    "/_meta/openai~1outputTemplate",
    "/_meta/ui/resourceUri",
    "/_meta/ui~1resourceUri",
];

/// The widget template URIs a tool's `_meta` names.
fn templates(tool: &Value) -> Vec<&str> {
    TEMPLATE_POINTERS
        .iter()
        .filter_map(|p| tool.pointer(p).and_then(Value::as_str))
        .collect()
}

/// A member's tool with its template URIs made public (as its resources are listed).
fn publish_templates(tool: &mut Value, uris: &UriMap, member: usize) {
    for p in TEMPLATE_POINTERS {
        if let Some(v) = tool.pointer_mut(p)
            && let Some(uri) = v.as_str()
        {
            let public = uris.public(member, uri).to_owned();
            *v = Value::from(public);
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
