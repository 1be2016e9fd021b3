//! Log setup shared by the `relay` and `bridge` binaries: `--log-format text|json`, with
//! `RUST_LOG` choosing what is logged (default `info`). Everything goes to standard error;
//! text is coloured only when standard error is a terminal (and `NO_COLOR` is unset).
//!
//! In `json` every line is one JSON object: `timestamp`, `level`, `target`, `message` and
//! the event's fields at the top level (e.g. the relay's `request_id`, `tunnel`, `status`).

use std::io::IsTerminal;

use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{DynFilterFn, EnvFilter, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `--log-format` of a command line, read before the command line is parsed (the
/// logger exists before parsing, which may log): the last `--log-format X` or
/// `--log-format=X` before a `--`, else the environment variable `env`, else text. An
/// invalid value gives text here; the parser then refuses it.
pub fn format_from_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    env: &str,
) -> LogFormat {
    let mut value = std::env::var_os(env);
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        if a == "--" {
            break;
        }
        if a == "--log-format" {
            value = args.next();
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--log-format=")) {
            value = Some(v.into());
        }
    }
    match value.as_ref().and_then(|v| v.to_str()) {
        Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Whether a boolean flag (`--log-requests`) is on, read before the command line is
/// parsed like [`format_from_args`]: present before a `--`, or the environment variable
/// `env` set to `1`/`true`.
pub fn flag_from_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    flag: &str,
    env: &str,
) -> bool {
    let mut on = std::env::var(env).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    for a in args {
        if a == "--" {
            break;
        }
        if a == flag {
            on = true;
        }
    }
    on
}

/// Installs the process's logger; `default` is the filter used when `RUST_LOG` is unset
/// (e.g. `info`). With `count_bridges`, the relay's bridge connection events are also
/// counted as metrics (see [`crate::observe::metrics::BridgeEvents`]), whatever `RUST_LOG` says.
pub fn init(format: LogFormat, count_bridges: bool, default: &str) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Only a filter that lets `trace` through needs the WebSocket guard; any other is used
    // as it is (one filter, decided per callsite).
    if env
        .max_level_hint()
        .is_some_and(|max| max >= LevelFilter::TRACE)
    {
        init_with(format, count_bridges, env.and(no_websocket_traces()));
    } else {
        init_with(format, count_bridges, env);
    }
}

/// The node a relay's lines name (see [`set_node`]).
static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every later log line name this node: a `node` field first in `json`, a
/// `node=ID ` prefix in text. For relays of several nodes; only the first call counts.
pub fn set_node(id: &str) {
    let _ = NODE.set(id.to_owned());
}

/// A line format that names the node (when [`set_node`] gave one) before the line
/// `inner` writes.
struct WithNode<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithNode<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(node) = NODE.get() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "node={node} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"node\":{},{rest}",
                serde_json::Value::from(node.as_str())
            ),
            None => writer.write_str(&line),
        }
    }
}

/// Installs the logger with the filter of its lines.
fn init_with<F>(format: LogFormat, count_bridges: bool, filter: F)
where
    F: tracing_subscriber::layer::Filter<Registry> + Send + Sync + 'static,
{
    // Colours only on a terminal: log files and journals get plain text (and writing the
    // escape codes is a measurable share of a busy relay's CPU).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .map_event_format(|inner| WithNode { inner, json: false })
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .map_event_format(|inner| WithNode { inner, json: true })
            .with_filter(filter)
            .boxed(),
    };
    let counting = count_bridges.then(|| {
        crate::observe::metrics::BridgeEvents
            .with_filter(Targets::new().with_target("relay::link::socket", LevelFilter::INFO))
    });
    tracing_subscriber::registry()
        .with(lines)
        .with(counting)
        .init();
}

/// Drops the WebSocket library's `trace` events, whatever `RUST_LOG` asks: they print every
/// frame's bytes and the upgrade request's headers, and so the bridge token (in the
/// `Authorization` header, and in the `Hello` of bridges of earlier releases). A filter of
/// its own rather than a directive added to the `EnvFilter`: it decides on static metadata
/// alone, and leaves every other target's level exactly as `RUST_LOG` says.
fn no_websocket_traces<S>() -> DynFilterFn<
    S,
    impl Fn(&Metadata<'_>, &tracing_subscriber::layer::Context<'_, S>) -> bool,
    impl Fn(&'static Metadata<'static>) -> Interest,
> {
    fn keep(meta: &Metadata<'_>) -> bool {
        let target = meta.target();
        let websocket =
            target.starts_with("tungstenite") || target.starts_with("tokio_tungstenite");
        !(websocket && *meta.level() == Level::TRACE)
    }
    // The decision is static: made once per callsite, never per event.
    DynFilterFn::new(|meta, _| keep(meta)).with_callsite_filter(|meta| {
        if keep(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(args: &[&str]) -> LogFormat {
        format_from_args(
            args.iter().map(std::ffi::OsString::from),
            "RELAY_TEST_UNSET_LOG_FORMAT",
        )
    }

    #[test]
    fn websocket_frames_are_never_traced() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        struct Keep(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> Layer<S> for Keep {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                let m = e.metadata();
                self.0
                    .lock()
                    .unwrap()
                    .push(format!("{}:{}", m.target(), m.level()));
            }
        }
        let filter = EnvFilter::new("trace").and(no_websocket_traces());
        let subscriber =
            tracing_subscriber::registry().with(Keep(seen.clone()).with_filter(filter));
        tracing::subscriber::with_default(subscriber, || {
            tracing::event!(target: "tungstenite::protocol", Level::TRACE, "frame bytes");
            tracing::event!(target: "tokio_tungstenite", Level::TRACE, "frame bytes");
            tracing::event!(target: "tungstenite::protocol", Level::DEBUG, "closing");
            tracing::event!(target: "relay::link::socket", Level::TRACE, "ours");
        });
        assert_eq!(
            *seen.lock().unwrap(),
            ["tungstenite::protocol:DEBUG", "relay::link::socket:TRACE"]
        );
    }

    #[test]
    fn reads_a_flag_before_parsing() {
        let on = |args: &[&str]| {
            flag_from_args(
                args.iter().map(std::ffi::OsString::from),
                "--log-requests",
                "RELAY_TEST_UNSET_LOG_REQUESTS",
            )
        };
        assert!(!on(&["relay", "serve"]));
        assert!(on(&["relay", "serve", "--log-requests"]));
        assert!(on(&["bridge", "--log-requests", "run", "--", "x"]));
        // After `--` it belongs to the server's command line.
        assert!(!on(&["bridge", "run", "--", "server", "--log-requests"]));
    }

    #[test]
    fn reads_the_format_before_parsing() {
        assert_eq!(format(&["relay", "serve"]), LogFormat::Text);
        assert_eq!(
            format(&["relay", "serve", "--log-format", "json"]),
            LogFormat::Json
        );
        assert_eq!(
            format(&["relay", "--log-format=json", "serve"]),
            LogFormat::Json
        );
        assert_eq!(
            format(&[
                "relay",
                "--log-format=json",
                "serve",
                "--log-format",
                "text"
            ]),
            LogFormat::Text
        );
        // After `--` the words belong to the server command.
        assert_eq!(
            format(&["bridge", "run", "--", "srv", "--log-format", "json"]),
            LogFormat::Text
        );
        assert_eq!(format(&["relay", "--log-format"]), LogFormat::Text);
    }
}
