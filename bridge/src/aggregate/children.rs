//! [`AggregateChildren`]: the core's children for an aggregated tunnel. Each child the
//! core starts is one aggregate [`Session`] over one child of every member, each member's
//! children started through that member's own [`Children`] (stdio processes, or upstream
//! HTTP sessions). One task owns the sessions and the members' children: the core's
//! calls reach it through a queue, and the members' lines and exits come back through a
//! channel of their own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

use super::session::{Memory, Session};
use crate::child::{ChildEvent, ChildId, ChildSpec};
use crate::core::Children;
use crate::policy::Policy;

/// Commands queued to the aggregate task before the core is told it is not keeping up.
const QUEUE: usize = 4096;
/// Notes kept per child for errors shown locally (why members stopped).
const NOTES: usize = 20;

/// One member of an aggregated tunnel: its name and the children it is served by.
pub struct Member {
    /// Its name (the prefix of its tools' public names).
    pub name: String,
    /// Starts its children (each started with `spec`); their events go to the channel
    /// given to [`AggregateChildren::new`] with it.
    pub children: Box<dyn Children + Send>,
    /// What its children run (for a stdio member; ignored by HTTP ones).
    pub spec: ChildSpec,
    /// Its own policy: which of its tools are offered, and their annotations.
    pub policy: Option<Policy>,
}

enum Command {
    Spawn(ChildId),
    Line(ChildId, Vec<u8>),
    Kill(ChildId),
    /// Start member `.1` of child `.0` again (after it stopped, once its delay passed).
    Restart(ChildId, usize),
}

/// First delay before a member that stopped is started again; it doubles with each stop
/// in a row, up to [`MAX_RESTART_DELAY`], and starts over once the member writes a line.
const RESTART_DELAY: Duration = Duration::from_millis(500);
/// Longest delay before a member that stopped is started again.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// The core's children of an aggregated tunnel (see the module documentation).
pub struct AggregateChildren {
    commands: mpsc::Sender<Command>,
    live: HashSet<ChildId>,
    /// Why members are down, per child (for errors shown locally).
    notes: Arc<Mutex<HashMap<ChildId, Vec<String>>>>,
}

impl AggregateChildren {
    /// Children of `tunnel` over `members`, whose own children report to `member_events`;
    /// what the aggregate sessions write for the core goes to `events`.
    pub fn new(
        tunnel: &str,
        members: Vec<Member>,
        member_events: mpsc::Receiver<ChildEvent>,
        events: mpsc::Sender<ChildEvent>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let notes = Arc::new(Mutex::new(HashMap::new()));
        let task = Task {
            again: tx.downgrade(),
            delays: HashMap::new(),
            tunnel: tunnel.to_owned(),
            names: members.iter().map(|m| m.name.clone()).collect(),
            policies: members.iter().map(|m| m.policy.clone()).collect(),
            members,
            sessions: HashMap::new(),
            inner: HashMap::new(),
            next_inner: 1,
            events,
            notes: notes.clone(),
            memory: Memory::default(),
        };
        tokio::spawn(task.run(rx, member_events));
        Self {
            commands: tx,
            live: HashSet::new(),
            notes,
        }
    }
}

impl Children for AggregateChildren {
    fn spawn(&mut self, id: ChildId, _spec: &ChildSpec) -> Result<(), String> {
        self.commands
            .try_send(Command::Spawn(id))
            .map_err(|_| "the aggregate task is gone or busy".to_owned())?;
        self.live.insert(id);
        Ok(())
    }

    fn send_line(&mut self, id: ChildId, line: Vec<u8>) -> bool {
        self.live.contains(&id) && self.commands.try_send(Command::Line(id, line)).is_ok()
    }

    fn stdin_closed(&self, id: ChildId) -> bool {
        !self.live.contains(&id) || self.commands.is_closed()
    }

    fn stderr_tail(&self, id: ChildId) -> Vec<String> {
        self.notes
            .lock()
            .ok()
            .and_then(|n| n.get(&id).cloned())
            .unwrap_or_default()
    }

    fn kill(&mut self, id: ChildId) {
        if self.live.remove(&id) {
            let _ = self.commands.try_send(Command::Kill(id));
        }
    }
}

struct Task {
    /// The task's own queue, to start a member again later (weak: the queue closes when
    /// the core drops its children).
    again: mpsc::WeakSender<Command>,
    /// The next restart delay of each (child, member) that stopped.
    delays: HashMap<(ChildId, usize), Duration>,
    tunnel: String,
    names: Vec<String>,
    policies: Vec<Option<Policy>>,
    members: Vec<Member>,
    /// The aggregate sessions, by the core's child id, with their members' child ids.
    sessions: HashMap<ChildId, (Session, Vec<ChildId>)>,
    /// A member's child id → (the core's child, the member).
    inner: HashMap<ChildId, (ChildId, usize)>,
    next_inner: ChildId,
    events: mpsc::Sender<ChildEvent>,
    notes: Arc<Mutex<HashMap<ChildId, Vec<String>>>>,
    /// The members' last lists, shared by the sessions.
    memory: Memory,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut member_events: mpsc::Receiver<ChildEvent>,
    ) {
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    Some(Command::Spawn(id)) => self.spawn(id).await,
                    Some(Command::Line(id, line)) => {
                        if let Some((s, _)) = self.sessions.get_mut(&id) {
                            s.on_core_line(&line);
                        }
                        self.flush(id).await;
                    }
                    Some(Command::Kill(id)) => self.kill(id),
                    Some(Command::Restart(id, member)) => self.restart(id, member).await,
                    None => break,
                },
                ev = member_events.recv() => match ev {
                    Some(ev) => self.on_member_event(ev).await,
                    None => break,
                },
            }
        }
        for id in self.sessions.keys().copied().collect::<Vec<_>>() {
            self.kill(id);
        }
    }

    async fn spawn(&mut self, id: ChildId) {
        let mut ids = Vec::new();
        let mut failed = Vec::new();
        let mut session = Session::with_memory(&self.tunnel, &self.names, self.memory.clone())
            .with_policies(self.policies.clone());
        for (i, m) in self.members.iter_mut().enumerate() {
            let inner = self.next_inner;
            self.next_inner += 1;
            match m.children.spawn(inner, &m.spec) {
                Ok(()) => {
                    self.inner.insert(inner, (id, i));
                }
                Err(e) => {
                    warn!(member = %m.name, "cannot start a member of the tunnel: {e}");
                    session.member_gone(i, &e);
                    failed.push(i);
                }
            }
            ids.push(inner);
        }
        self.sessions.insert(id, (session, ids));
        for i in failed {
            self.restart_later(id, i);
        }
        self.flush(id).await;
    }

    /// Starts member `member` of child `id` again, if the child is still there.
    async fn restart(&mut self, id: ChildId, member: usize) {
        let Some((s, ids)) = self.sessions.get_mut(&id) else {
            return;
        };
        let (Some(m), Some(slot)) = (self.members.get_mut(member), ids.get_mut(member)) else {
            return;
        };
        let inner = self.next_inner;
        self.next_inner += 1;
        match m.children.spawn(inner, &m.spec) {
            Ok(()) => {
                *slot = inner;
                self.inner.insert(inner, (id, member));
                s.member_back(member);
            }
            Err(e) => {
                warn!(member = %m.name, "cannot start a member of the tunnel again: {e}");
                self.restart_later(id, member);
            }
        }
        self.flush(id).await;
    }

    /// Plans the restart of member `member` of child `id` (with backoff).
    fn restart_later(&mut self, id: ChildId, member: usize) {
        let delay = self.delays.entry((id, member)).or_insert(RESTART_DELAY);
        let wait = *delay;
        *delay = (*delay * 2).min(MAX_RESTART_DELAY);
        let Some(again) = self.again.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = again.send(Command::Restart(id, member)).await;
        });
    }

    fn kill(&mut self, id: ChildId) {
        self.delays.retain(|(c, _), _| *c != id);
        if let Some((_, ids)) = self.sessions.remove(&id) {
            for (i, inner) in ids.into_iter().enumerate() {
                self.inner.remove(&inner);
                if let Some(m) = self.members.get_mut(i) {
                    m.children.kill(inner);
                }
            }
        }
        if let Ok(mut n) = self.notes.lock() {
            n.remove(&id);
        }
    }

    async fn on_member_event(&mut self, ev: ChildEvent) {
        let (inner, line, gone) = match ev {
            ChildEvent::Line(i, l) => (i, Some(l), None),
            ChildEvent::Exited(i, why) | ChildEvent::Unreachable(i, why) => (i, None, Some(why)),
        };
        let Some(&(id, member)) = self.inner.get(&inner) else {
            return;
        };
        let Some((s, _)) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Some(line) = line {
            s.on_member_line(member, &line);
            self.delays.remove(&(id, member));
        }
        if let Some(why) = gone {
            self.inner.remove(&inner);
            s.member_gone(member, &why);
            warn!(member = %self.names[member], "a member of the tunnel stopped ({why}); starting it again");
            let note = format!("{}: {why}", self.names[member]);
            if let Ok(mut n) = self.notes.lock() {
                let notes = n.entry(id).or_default();
                if notes.len() == NOTES {
                    notes.remove(0);
                }
                notes.push(note);
            }
            self.restart_later(id, member);
        }
        self.flush(id).await;
    }

    /// Writes what session `id` produced: lines for the core, lines for its members.
    async fn flush(&mut self, id: ChildId) {
        let Some((s, ids)) = self.sessions.get_mut(&id) else {
            return;
        };
        let (to_core, to_members) = s.take_output();
        for (m, line) in to_members {
            let Some(&inner) = ids.get(m) else { continue };
            if let Some(member) = self.members.get_mut(m)
                && !member.children.send_line(inner, line)
            {
                warn!(member = %member.name, "a member of the tunnel is not keeping up; line dropped");
            }
        }
        for line in to_core {
            let _ = self
                .events
                .send(ChildEvent::Line(id, Bytes::from(line)))
                .await;
        }
    }
}
