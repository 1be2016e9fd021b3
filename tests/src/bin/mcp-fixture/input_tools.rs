//! The tools (and the one prompt) that ask the client for input with server→client
//! requests: the conformance suite's sampling and elicitation tools, the 2026-07-28
//! scenarios' tools whose request ids are the input keys those scenarios expect, and the
//! project's own `elicit_echo` and `test_roots`.

use serde_json::{Value, json};

use crate::client_requests::{
    describe_elicitation, elicitation_params, elicited_action, elicited_field, error_message,
    list_or_none, root_uris, sampled, sampled_text, sampling_params,
};
use crate::lock;
use crate::output::Reply;
use crate::tools::ToolCall;

/// `_meta` key of the capabilities a stateless-era client declares on each request.
pub(crate) const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

impl ToolCall<'_> {
    /// Asks `key` for one required `field` of JSON type `kind` (`string` or `boolean`) with
    /// an elicitation form: the field's value, `None` when declined or cancelled.
    fn elicit_field(
        &self,
        key: &str,
        message: &str,
        field: &str,
        kind: &str,
    ) -> Result<Option<String>, Reply> {
        let params = elicitation_params(message, field, kind);
        elicited_field(
            self.ask_client_as(key, "elicitation/create", params)?,
            key,
            field,
            kind,
        )
    }

    /// Asks `key` to the client's LLM with one user message: the text it answered.
    fn sample_as(&self, key: &str, text: &str, max_tokens: u64) -> Result<String, Reply> {
        let params = sampling_params(text, max_tokens);
        sampled(
            self.ask_client_as(key, "sampling/createMessage", params)?,
            key,
        )
    }

    /// `test_input_required_result_elicitation`: asks `user_name` for a name.
    pub(crate) fn ask_name(&self) -> Result<Reply, Reply> {
        Ok(Reply::text(
            match self.elicit_field("user_name", "What is your name?", "name", "string")? {
                Some(name) => format!("Hello, {name}!"),
                None => "No name was given.".to_owned(),
            },
        ))
    }

    /// `test_input_required_result_sampling`: asks `capital_question` to the client's LLM.
    pub(crate) fn ask_capital(&self) -> Result<Reply, Reply> {
        let text = self.sample_as("capital_question", "What is the capital of France?", 100)?;
        Ok(Reply::text(format!("LLM response: {text}")))
    }

    /// `test_input_required_result_list_roots`: asks `client_roots` and names them.
    pub(crate) fn ask_roots(&self) -> Result<Reply, Reply> {
        let answer = self.ask_client_as("client_roots", "roots/list", json!({}))?;
        let uris = root_uris(answer, "client_roots")?;
        Ok(Reply::text(format!(
            "Client roots: {}",
            list_or_none(&uris)
        )))
    }

    /// `test_input_required_result_request_state`: asks `confirm`; the answer says `state-ok`.
    pub(crate) fn ask_confirmation(&self) -> Result<Reply, Reply> {
        let ok = self.elicit_field("confirm", "Please confirm", "ok", "boolean")?;
        let state = ok.map_or_else(
            || "not confirmed".to_owned(),
            |ok| format!("confirmed={ok}"),
        );
        Ok(Reply::text(format!("state-ok: {state}")))
    }

    /// `test_input_required_result_multiple_inputs`: asks `user_name`, `greeting` and
    /// `client_roots` at once.
    pub(crate) fn ask_three_inputs(&self) -> Result<Reply, Reply> {
        let mut answers = self
            .ask_client_all(vec![
                (
                    "user_name",
                    "elicitation/create",
                    elicitation_params("What is your name?", "name", "string"),
                ),
                (
                    "greeting",
                    "sampling/createMessage",
                    sampling_params("Generate a greeting", 50),
                ),
                ("client_roots", "roots/list", json!({})),
            ])?
            .into_iter();
        let mut next = || answers.next().unwrap_or(Ok(Value::Null));
        let name = elicited_field(next(), "user_name", "name", "string")?;
        let name = name.unwrap_or_else(|| "stranger".to_owned());
        let greeting = sampled(next(), "greeting")?;
        let uris = root_uris(next(), "client_roots")?;
        Ok(Reply::text(format!(
            "Hello, {name}! Greeting: {greeting} Roots: {}",
            list_or_none(&uris)
        )))
    }

    /// `test_input_required_result_multi_round`: asks `step1`, and only once it is answered,
    /// `step2`.
    pub(crate) fn ask_two_rounds(&self) -> Result<Reply, Reply> {
        let first = "Step 1: What is your name?";
        let Some(name) = self.elicit_field("step1", first, "name", "string")? else {
            return Ok(Reply::text("Stopped at step 1."));
        };
        let second = "Step 2: What is your favorite color?";
        Ok(Reply::text(
            match self.elicit_field("step2", second, "color", "string")? {
                Some(color) => format!("Thanks, {name}: your favorite color is {color}."),
                None => format!("Thanks, {name}; stopped at step 2."),
            },
        ))
    }

    /// `test_input_required_result_tampered_state`: asks `approval`.
    pub(crate) fn ask_approval(&self) -> Result<Reply, Reply> {
        let question = "Do you approve this operation?";
        let approved = self.elicit_field("approval", question, "ok", "boolean")?;
        Ok(Reply::text(format!(
            "approved={}",
            approved.as_deref().unwrap_or("false")
        )))
    }

    /// The client capabilities of this request: `_meta`'s (stateless era), else the ones
    /// declared at `initialize`.
    pub(crate) fn declared_capabilities(&self) -> Value {
        match self.meta.get(META_CLIENT_CAPABILITIES) {
            Some(capabilities) => capabilities.clone(),
            None => lock(&self.server.client_capabilities).clone(),
        }
    }

    /// `test_input_required_result_capabilities`: asks, in one burst, only for what the client
    /// declared: `capability_elicitation`, `capability_sampling`, `capability_roots`.
    pub(crate) fn ask_declared_capabilities(&self) -> Result<Reply, Reply> {
        let declared = self.declared_capabilities();
        let has = |capability: &str| declared.get(capability).is_some_and(|c| !c.is_null());
        let mut requests = Vec::new();
        if has("elicitation") {
            requests.push((
                "capability_elicitation",
                "elicitation/create",
                elicitation_params("Continue?", "ok", "boolean"),
            ));
        }
        if has("sampling") {
            requests.push((
                "capability_sampling",
                "sampling/createMessage",
                sampling_params("Say hello", 20),
            ));
        }
        if has("roots") {
            requests.push(("capability_roots", "roots/list", json!({})));
        }
        if requests.is_empty() {
            return Ok(Reply::text(
                "The client declared none of elicitation, sampling, roots; nothing was asked.",
            ));
        }
        let keys: Vec<&str> = requests.iter().map(|(id, _, _)| *id).collect();
        let answers = self.ask_client_all(requests)?;
        let mut used = Vec::new();
        for (key, answer) in keys.into_iter().zip(answers) {
            match key {
                "capability_elicitation" => {
                    used.push(format!("elicitation ({})", elicited_action(answer, key)?));
                }
                "capability_sampling" => used.push(format!("sampling ({})", sampled(answer, key)?)),
                _ => used.push(format!(
                    "roots ({})",
                    list_or_none(&root_uris(answer, key)?)
                )),
            }
        }
        Ok(Reply::text(format!("Used: {}", used.join(", "))))
    }

    /// `test_missing_capability`: asks `missing_capability` to the client's LLM whatever the
    /// client declared (a stateless-era server must refuse such a call with -32021 instead).
    pub(crate) fn ask_sampling_regardless(&self) -> Result<Reply, Reply> {
        let text = self.sample_as("missing_capability", "This tool needs sampling.", 20)?;
        Ok(Reply::text(format!("LLM response: {text}")))
    }

    /// `test_streaming_elicitation`: one progress notification (when a token was given), then
    /// asks `streaming_elicitation`.
    pub(crate) fn streaming_elicitation(&self) -> Result<Reply, Reply> {
        self.progress(0, 1, "waiting for the user");
        let key = "streaming_elicitation";
        let params = elicitation_params("Continue the stream?", "ok", "boolean");
        let action = elicited_action(self.ask_client_as(key, "elicitation/create", params)?, key)?;
        self.progress(1, 1, "answered");
        Ok(Reply::text(format!(
            "Streaming elicitation answered: {action}"
        )))
    }

    /// `prompts/get` of [`INPUT_PROMPT`]: asks `user_context`, then answers a prompt using it.
    pub(crate) fn input_prompt(&self) -> Result<Reply, Reply> {
        let question = "What context should the prompt use?";
        let context = self.elicit_field("user_context", question, "context", "string")?;
        let context = context.unwrap_or_else(|| "no context".to_owned());
        Ok(Reply::Result(json!({
            "description": "A prompt built from the context the user gave",
            "messages": [{
                "role": "user",
                "content": { "type": "text", "text": format!("Use this context: {context}") },
            }],
        })))
    }

    /// `test_sampling`: asks the client's LLM via `sampling/createMessage`.
    pub(crate) fn sampling(&self) -> Result<Reply, Reply> {
        let params = sampling_params(self.str_arg("prompt")?, 100);
        self.ask_reported("sampling/createMessage", params, "Sampling", |result| {
            let text = sampled_text(result).unwrap_or("No response");
            format!("LLM response: {text}")
        })
    }

    /// `test_elicitation`: asks the user for a username and an email address.
    pub(crate) fn elicitation(&self) -> Result<Reply, Reply> {
        let message = self.str_arg("message")?;
        let schema = json!({
            "type": "object",
            "properties": {
                "username": { "type": "string", "description": "User's response" },
                "email": { "type": "string", "description": "User's email address" },
            },
            "required": ["username", "email"],
        });
        self.elicitation_with(message, schema, "User response")
    }

    /// The SEP-1034 / SEP-1330 elicitation tools: a form with `schema`, result echoed back.
    pub(crate) fn elicitation_form(&self, message: &str, schema: Value) -> Result<Reply, Reply> {
        self.elicitation_with(message, schema, "Elicitation completed")
    }

    /// Asks the form `schema` with `message`: `<label>: action=…, content=…`.
    fn elicitation_with(&self, message: &str, schema: Value, label: &str) -> Result<Reply, Reply> {
        let params = json!({ "message": message, "requestedSchema": schema });
        self.ask_reported("elicitation/create", params, "Elicitation", |result| {
            format!("{label}: {}", describe_elicitation(result))
        })
    }

    /// Sends `method` with `params`: the answer as `describe` puts it, or a tool error
    /// `<what> not supported or error: …` when the client answered with an error.
    fn ask_reported(
        &self,
        method: &str,
        params: Value,
        what: &str,
        describe: impl FnOnce(&Value) -> String,
    ) -> Result<Reply, Reply> {
        Ok(match self.ask_client(method, params)? {
            Ok(result) => Reply::text(describe(&result)),
            Err(error) => Reply::tool_error(format!(
                "{what} not supported or error: {}",
                error_message(&error)
            )),
        })
    }

    /// `elicit_echo`: elicits an `answer`, returns `<payload>|<action>|<answer>`.
    pub(crate) fn elicit_echo(&self) -> Result<Reply, Reply> {
        let payload = self.str_arg("payload")?;
        let params = json!({
            "message": format!("payload:{payload}"),
            "requestedSchema": {
                "type": "object",
                "properties": { "answer": { "type": "string" } },
                "required": ["answer"],
            },
        });
        Ok(match self.ask_client("elicitation/create", params)? {
            Ok(result) => {
                let action = result
                    .get("action")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let answer = match result.get("content").and_then(|c| c.get("answer")) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(answer)) => answer.clone(),
                    Some(other) => other.to_string(),
                };
                Reply::text(format!("{payload}|{action}|{answer}"))
            }
            Err(error) => Reply::tool_error(error_message(&error)),
        })
    }

    /// `test_roots`: asks the client for its roots and reports the raw answer.
    pub(crate) fn roots(&self) -> Result<Reply, Reply> {
        let answer = match self.ask_client("roots/list", json!({}))? {
            Ok(result) => result,
            Err(error) => error,
        };
        let text = answer.to_string();
        self.server.count(&format!("roots {text}"));
        Ok(Reply::text(text))
    }
}
