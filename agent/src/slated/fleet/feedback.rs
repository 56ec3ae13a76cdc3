//! Feedback to the server: every message goes through the queue on `/data` ([`super::outbox`]),
//! so the server hears each step once and in order, however long it was away.

use super::client::{self, RequestError};
use super::outbox::Item;
use super::{label, Fleet};
use crate::marker;
use hyper::Method;
use slate_core::api::Marker;
use slate_core::fleet::ddi::{Execution, Feedback};
use url::Url;

impl Fleet {
    /// Sends what waits in the queue, oldest first, until the server refuses one.
    pub(super) async fn flush(&mut self) {
        while let Some(item) = self.outbox.front().cloned() {
            let method = if item.method == "PUT" {
                Method::PUT
            } else {
                Method::POST
            };
            let Ok(url) = Url::parse(&item.url) else {
                let _ = self.outbox.pop();
                continue;
            };
            match client::send_json(&self.https, method, &url, item.body.clone().into_bytes()).await
            {
                Ok(()) => {
                    let bytes = item.body.len() as u64;
                    if let Err(e) = self.outbox.pop() {
                        marker::warn(format!("fleet: the feedback queue: {e:#}"));
                    }
                    self.status(|st| {
                        st.feedback_sent += 1;
                        st.feedback_bytes += bytes;
                    });
                }
                // The server no longer has this action (410, 404) or finds the feedback
                // malformed (400): sending it again cannot help.
                Err(RequestError::Status { status, .. })
                    if matches!(status.as_u16(), 400 | 404 | 410) =>
                {
                    self.error(format!(
                        "{} {}: the server answered {status}; this feedback is dropped",
                        item.method, item.url
                    ));
                    let _ = self.outbox.pop();
                }
                Err(e) => {
                    self.error(format!("feedback kept for later: {e}"));
                    break;
                }
            }
        }
        let queued = self.outbox.len() as u64;
        self.status(|st| st.feedback_queued = queued);
    }

    /// Queues `feedback` for the action whose feedback resource is `url` and sends the queue.
    pub(super) async fn feedback(&mut self, url: &Url, feedback: Feedback) {
        let final_word = matches!(
            feedback.status.execution,
            Execution::Closed | Execution::Rejected | Execution::Canceled
        );
        let action = feedback.id.parse().unwrap_or(0);
        let (execution, finished) = (
            label(&feedback.status.execution),
            label(&feedback.status.result.finished),
        );
        let item = Item {
            method: "POST".into(),
            url: url.to_string(),
            body: serde_json::to_string(&feedback).unwrap_or_default(),
            final_word,
        };
        if let Err(e) = self.outbox.push(item) {
            marker::warn(format!("fleet: keeping feedback on /data: {e:#}"));
        }
        self.flush().await;
        let sent = self.outbox.is_empty();
        marker::emit(&Marker::FleetFeedback {
            action,
            execution,
            finished,
            sent,
        });
    }
}
