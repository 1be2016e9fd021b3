//! The node's ear on the database: one connection of its own (outside the pool) that
//! `LISTEN`s on [`CHANNEL`] and passes what it hears to the node, and says
//! [`Event::Resync`] each time it (re)connects, as announcements made while it was away are
//! lost.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::events::{CHANNEL, Event};

/// Longest pause between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Listens for as long as the process runs (announcements heard while nobody receives
/// are dropped).
pub(super) async fn run(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    tx: broadcast::Sender<Event>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if heard_tx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("the database's announcements: {e}");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        let _ = tx.send(Event::Resync);
                        while let Some(payload) = heard.recv().await {
                            match Event::parse(&payload) {
                                Some(e) => {
                                    let _ = tx.send(e);
                                }
                                None => {
                                    tracing::debug!(%payload, "an announcement this node does not know")
                                }
                            }
                        }
                        tracing::warn!("lost the database's announcements; reconnecting");
                    }
                    Err(e) => tracing::warn!("listening for the database's announcements: {e}"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!("connecting to hear the database's announcements: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
