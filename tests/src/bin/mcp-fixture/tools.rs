//! `tools/call`: the fixture's tools, run on the call's own thread. The tools that ask the
//! client for input are in `input_tools`.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::catalog::{sep1034_schema, sep1330_schema};
use crate::client_requests::ClientAnswer;
use crate::output::Reply;
use crate::server::{CancelToken, Server};
use crate::{INVALID_PARAMS, SERVER_NAME, TEST_AUDIO_BASE64, TEST_IMAGE_BASE64, lock};

/// Largest payload the `big` tool agrees to produce.
pub(crate) const BIG_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// One `tools/call` being executed (or the `prompts/get` of [`INPUT_PROMPT`]).
pub(crate) struct ToolCall<'a> {
    pub(crate) server: &'a Server,
    pub(crate) args: Map<String, Value>,
    pub(crate) progress_token: Option<Value>,
    /// The request's `params._meta` (`Null` when absent).
    pub(crate) meta: Value,
    pub(crate) cancel: &'a CancelToken,
}

impl<'a> ToolCall<'a> {
    /// A call with `args` and `params._meta` = `meta`.
    pub(crate) fn new(
        server: &'a Server,
        args: Map<String, Value>,
        meta: Value,
        cancel: &'a CancelToken,
    ) -> Self {
        let progress_token = meta
            .get("progressToken")
            .filter(|token| !token.is_null())
            .cloned();
        ToolCall {
            server,
            args,
            progress_token,
            meta,
            cancel,
        }
    }

    /// A required string argument, or a tool error naming it.
    pub(crate) fn str_arg(&self, name: &str) -> Result<&str, Reply> {
        self.args.get(name).and_then(Value::as_str).ok_or_else(|| {
            Reply::tool_error(format!("Invalid arguments: `{name}` must be a string"))
        })
    }

    /// An optional string argument.
    pub(crate) fn opt_str_arg(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
    }

    /// An optional numeric argument, with `read` (`Value::as_u64`, …) applied.
    fn num_arg<T>(&self, name: &str, read: impl FnOnce(&Value) -> Option<T>) -> Option<T> {
        self.args.get(name).and_then(read)
    }

    /// Sends `notifications/progress` if the request carried a progress token.
    pub(crate) fn progress(&self, progress: u64, total: u64, message: &str) {
        if let Some(token) = &self.progress_token {
            self.server.notify(
                "notifications/progress",
                json!({ "progressToken": token, "progress": progress, "total": total, "message": message }),
            );
        }
    }

    /// Sends a server→client request; `Err(Reply::Silent)` if the call got cancelled.
    pub(crate) fn ask_client(&self, method: &str, params: Value) -> Result<ClientAnswer, Reply> {
        self.server
            .request_client(method, params, self.cancel)
            .ok_or(Reply::Silent)
    }

    /// Sends a server→client request with JSON-RPC id `id` (an input key); `Err(Reply::Silent)`
    /// if the call got cancelled.
    pub(crate) fn ask_client_as(
        &self,
        id: &str,
        method: &str,
        params: Value,
    ) -> Result<ClientAnswer, Reply> {
        let mut answers = self.ask_client_all(vec![(id, method, params)])?;
        Ok(answers.remove(0))
    }

    /// Sends all `(id, method, params)` requests in one burst, then waits for every answer
    /// (in the same order); `Err(Reply::Silent)` if the call got cancelled.
    pub(crate) fn ask_client_all(
        &self,
        requests: Vec<(&str, &str, Value)>,
    ) -> Result<Vec<ClientAnswer>, Reply> {
        let requests = requests
            .into_iter()
            .map(|(id, method, params)| (id.to_owned(), method, params))
            .collect();
        self.server
            .request_client_all(requests, self.cancel)
            .ok_or(Reply::Silent)
    }

    /// Runs tool `name`.
    ///
    /// Besides the 0.1.16 fixtures and the project's own tools, it serves the tools of the
    /// 2026-07-28 scenarios. Each asks the client with server→client requests whose JSON-RPC
    /// ids are the input keys the scenarios expect, and validates the answers (a malformed
    /// answer is a JSON-RPC error -32602, a client error a tool error):
    ///
    /// | tool | requests (id: method) | answer |
    /// |---|---|---|
    /// | `test_input_required_result_elicitation` | `user_name`: elicitation `name` | `Hello, <name>!` |
    /// | `test_input_required_result_sampling` | `capital_question`: sampling | `LLM response: <text>` |
    /// | `test_input_required_result_list_roots` | `client_roots`: roots/list | `Client roots: <uri>, …` |
    /// | `test_input_required_result_request_state` | `confirm`: elicitation `ok` | `state-ok: confirmed=<ok>` |
    /// | `test_input_required_result_multiple_inputs` | `user_name`, `greeting`, `client_roots` (one burst) | all three |
    /// | `test_input_required_result_multi_round` | `step1` (`name`), then `step2` (`color`) | both |
    /// | `test_input_required_result_tampered_state` | `approval`: elicitation `ok` | `approved=<ok>` |
    /// | `test_input_required_result_capabilities` | `capability_elicitation` / `_sampling` / `_roots`, only those declared in `_meta` | what was used |
    /// | `test_missing_capability` | `missing_capability`: sampling, whatever was declared | `LLM response: <text>` |
    /// | `test_streaming_elicitation` | `streaming_elicitation`: elicitation `ok` | the action |
    ///
    /// `test_logging_tool` sends three `notifications/message` (debug, info, warning) whatever
    /// `logging/setLevel` said; `test_trigger_tool_change` / `test_trigger_prompt_change` bump
    /// the version shown in `tools/list` / `prompts/list` and send the list-changed
    /// notification.
    pub(crate) fn run(&self, name: &str) -> Reply {
        let outcome = match name {
            "test_simple_text" => Ok(Reply::text("This is a simple text response for testing.")),
            "test_image_content" => Ok(Reply::Result(json!({
                "content": [{ "type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png" }]
            }))),
            "test_audio_content" => Ok(Reply::Result(json!({
                "content": [{ "type": "audio", "data": TEST_AUDIO_BASE64, "mimeType": "audio/wav" }]
            }))),
            "test_embedded_resource" => Ok(Reply::Result(json!({
                "content": [{
                    "type": "resource",
                    "resource": {
                        "uri": "test://embedded-resource",
                        "mimeType": "text/plain",
                        "text": "This is an embedded resource content.",
                    },
                }]
            }))),
            "test_multiple_content_types" => Ok(Reply::Result(json!({
                "content": [
                    { "type": "text", "text": "Multiple content types test:" },
                    { "type": "image", "data": TEST_IMAGE_BASE64, "mimeType": "image/png" },
                    {
                        "type": "resource",
                        "resource": {
                            "uri": "test://mixed-content-resource",
                            "mimeType": "application/json",
                            "text": r#"{"test":"data","value":123}"#,
                        },
                    },
                ]
            }))),
            "test_tool_with_logging" => Ok(self.with_logging()),
            "test_tool_with_progress" => Ok(self.with_progress()),
            "test_error_handling" => Ok(Reply::tool_error(
                "This tool intentionally returns an error for testing",
            )),
            "test_reconnection" => Ok(self.reconnection()),
            "test_sampling" => self.sampling(),
            "test_elicitation" => self.elicitation(),
            "test_elicitation_sep1034_defaults" => self.elicitation_form(
                "Please review and update the form fields with defaults",
                sep1034_schema(),
            ),
            "test_elicitation_sep1330_enums" => self.elicitation_form(
                "Please select options from the enum fields",
                sep1330_schema(),
            ),
            "test_input_required_result_elicitation" => self.ask_name(),
            "test_input_required_result_sampling" => self.ask_capital(),
            "test_input_required_result_list_roots" => self.ask_roots(),
            "test_input_required_result_request_state" => self.ask_confirmation(),
            "test_input_required_result_multiple_inputs" => self.ask_three_inputs(),
            "test_input_required_result_multi_round" => self.ask_two_rounds(),
            "test_input_required_result_tampered_state" => self.ask_approval(),
            "test_input_required_result_capabilities" => self.ask_declared_capabilities(),
            "test_missing_capability" => self.ask_sampling_regardless(),
            "test_streaming_elicitation" => self.streaming_elicitation(),
            "test_logging_tool" => Ok(self.logging_tool()),
            "test_trigger_tool_change" => Ok(self.list_changed("tool")),
            "test_trigger_prompt_change" => Ok(self.list_changed("prompt")),
            "json_schema_2020_12_tool" => Ok(Reply::text(format!(
                "JSON Schema 2020-12 tool called with: {}",
                Value::Object(self.args.clone())
            ))),
            "echo" => self.echo(),
            "slow" => Ok(self.slow()),
            "test_custom_header" => self.custom_header(),
            "elicit_echo" => self.elicit_echo(),
            "test_roots" => self.roots(),
            "trigger_list_changed" => {
                self.server
                    .notify("notifications/tools/list_changed", json!({}));
                Ok(Reply::text("ok"))
            }
            "touch_resource" => self.touch_resource(),
            "big" => Ok(self.big()),
            "garbage_then_echo" => {
                self.server.send_raw_line("this is not json");
                self.echo()
            }
            "exit" => Ok(self.exit()),
            "spawn_grandchild" => Ok(self.spawn_grandchild()),
            "flood" => Ok(self.flood()),
            other => Ok(Reply::Error(
                INVALID_PARAMS,
                format!("Unknown tool: {other}"),
            )),
        };
        outcome.unwrap_or_else(|reply| reply)
    }

    /// `test_trigger_tool_change` / `test_trigger_prompt_change` (`kind` `tool` / `prompt`):
    /// bumps that list's version and sends its list-changed notification.
    fn list_changed(&self, kind: &str) -> Reply {
        let counter = match kind {
            "tool" => &self.server.tool_list_version,
            _ => &self.server.prompt_list_version,
        };
        let version = counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.server
            .notify(&format!("notifications/{kind}s/list_changed"), json!({}));
        Reply::text(format!("{kind} list changed (version {version})"))
    }

    /// `test_logging_tool`: a debug, an info and a warning `notifications/message`, ~20 ms
    /// apart, whatever level `logging/setLevel` set.
    pub(crate) fn logging_tool(&self) -> Reply {
        let messages = [
            ("debug", "Logging tool: debug message"),
            ("info", "Logging tool: info message"),
            ("warning", "Logging tool: warning message"),
        ];
        for (index, (level, data)) in messages.into_iter().enumerate() {
            if index > 0 && self.cancel.sleep(Duration::from_millis(20)) {
                return Reply::Silent;
            }
            self.server.notify(
                "notifications/message",
                json!({ "level": level, "logger": SERVER_NAME, "data": data }),
            );
        }
        Reply::text("Logging tool sent 3 log messages")
    }

    /// `test_tool_with_logging`: three info log messages, ~50 ms apart.
    pub(crate) fn with_logging(&self) -> Reply {
        let steps = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (index, step) in steps.iter().enumerate() {
            if index > 0 && self.cancel.sleep(Duration::from_millis(50)) {
                return Reply::Silent;
            }
            self.server.log_message("info", step);
        }
        Reply::text("Tool with logging executed successfully")
    }

    /// `test_tool_with_progress`: progress 0, 50, 100 of 100, ~50 ms apart.
    pub(crate) fn with_progress(&self) -> Reply {
        for (index, step) in [0, 50, 100].into_iter().enumerate() {
            if index > 0 && self.cancel.sleep(Duration::from_millis(50)) {
                return Reply::Silent;
            }
            self.progress(step, 100, &format!("Completed step {step} of 100"));
        }
        let text = match &self.progress_token {
            Some(Value::String(token)) => token.clone(),
            Some(token) => token.to_string(),
            None => "no progress token".to_owned(),
        };
        Reply::text(text)
    }

    /// `test_reconnection`: over stdio there is no stream to close; it answers after 2.5 s,
    /// long enough for a relay that closes streams early (`--sse-poll-secs`) to close
    /// this one, so the client resumes it.
    pub(crate) fn reconnection(&self) -> Reply {
        if self.cancel.sleep(Duration::from_millis(2500)) {
            return Reply::Silent;
        }
        Reply::text(
            "Reconnection test completed successfully. If you received this, the client properly \
             reconnected after stream closure.",
        )
    }

    /// `echo`: returns `text`, after one progress notification if a token was given.
    pub(crate) fn echo(&self) -> Result<Reply, Reply> {
        let text = self.str_arg("text")?;
        if self.server.record_echo {
            self.server.count(&format!("echoed {text}"));
        }
        self.progress(1, 1, text);
        Ok(Reply::text(text))
    }

    /// `exit`: ends the process at once with `code` (default 1), answering nothing.
    pub(crate) fn exit(&self) -> Reply {
        let code = self
            .num_arg("code", Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(1);
        log!("exiting with code {code} as asked");
        if let Err(err) = lock(&self.server.out).flush() {
            log!("cannot flush stdout: {err}");
        }
        std::process::exit(code);
    }

    /// `spawn_grandchild`: starts `mcp-fixture --grandchild` (which sleeps until killed) in
    /// this process's group, records `grandchild <pid>` and answers the pid. The child is
    /// not waited for.
    pub(crate) fn spawn_grandchild(&self) -> Reply {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(err) => return Reply::tool_error(format!("cannot find own executable: {err}")),
        };
        let spawned = std::process::Command::new(exe)
            .arg("--grandchild")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                let pid = child.id();
                self.server.count(&format!("grandchild {pid}"));
                Reply::text(pid.to_string())
            }
            Err(err) => Reply::tool_error(format!("cannot spawn a grandchild: {err}")),
        }
    }

    /// `flood`: `count` progress notifications whose message is `bytes` `p` characters,
    /// then `flooded <count>`; stops without answering if cancelled.
    pub(crate) fn flood(&self) -> Reply {
        let count = self.num_arg("count", Value::as_u64).unwrap_or(100);
        let bytes = self
            .num_arg("bytes", Value::as_u64)
            .unwrap_or(1024)
            .min(BIG_MAX_BYTES);
        // Bounded by BIG_MAX_BYTES, so this fits in usize on every supported target.
        let message = "p".repeat(bytes as usize);
        for n in 1..=count {
            if self.cancel.is_cancelled() {
                return Reply::Silent;
            }
            self.progress(n, count, &message);
        }
        Reply::text(format!("flooded {count}"))
    }

    /// `slow`: waits `ms` (default 60 s) unless cancelled first.
    pub(crate) fn slow(&self) -> Reply {
        let ms = self.num_arg("ms", Value::as_f64).unwrap_or(60_000.0);
        let tag = self.opt_str_arg("tag").unwrap_or_default();
        let duration = Duration::from_secs_f64(ms.clamp(0.0, 1e9) / 1000.0);
        if self.cancel.sleep(duration) {
            self.server.count(&format!("cancelled {tag}"));
            return Reply::Silent;
        }
        Reply::text(format!("done {tag}"))
    }

    /// `test_custom_header`: echoes its `region` (a parameter mirrored into the
    /// `Mcp-Param-Region` header by 2026-07-28 clients).
    pub(crate) fn custom_header(&self) -> Result<Reply, Reply> {
        let region = self.str_arg("region")?;
        Ok(Reply::text(format!("region={region}")))
    }

    /// `touch_resource`: announces that `uri` changed.
    pub(crate) fn touch_resource(&self) -> Result<Reply, Reply> {
        let uri = self.str_arg("uri")?;
        self.server
            .notify("notifications/resources/updated", json!({ "uri": uri }));
        Ok(Reply::text("ok"))
    }

    /// `big`: one text item of exactly `bytes` `x` characters.
    pub(crate) fn big(&self) -> Reply {
        match self.num_arg("bytes", Value::as_u64) {
            Some(bytes) if bytes <= BIG_MAX_BYTES => {
                // Bounded by BIG_MAX_BYTES, so this fits in usize on every supported target.
                Reply::text("x".repeat(bytes as usize))
            }
            Some(bytes) => Reply::tool_error(format!(
                "bytes must be at most {BIG_MAX_BYTES}, got {bytes}"
            )),
            None => Reply::tool_error("Invalid arguments: `bytes` must be a non-negative integer"),
        }
    }
}
