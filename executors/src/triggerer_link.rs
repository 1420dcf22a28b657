//! The link between a triggerer pod and the leading scheduler (Pro's Kubernetes executor).
//!
//! The triggerer's Python needs the DAGs' code, which lives in their images, not in the
//! control plane's: so with pods, each image's triggerer runs as a pod of that image
//! (`leoflow triggerer`, [`serve`]), which starts `leoflow.triggerer` beside it and calls the
//! scheduler that created it (`TriggererLink.Link`, a bidirectional stream), proving itself
//! with a token of its Secret. The scheduler's side ([`Links`]) hands the stream to the
//! supervisor that waits for that pod, which speaks the same JSON lines to it as to a local
//! process: the pod is the process, seen through the network.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use leoflow_events::AttemptDigest;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::agent::{AgentError, channel};
use crate::proto::TriggererLine;
use crate::proto::triggerer_link_client::TriggererLinkClient;
use crate::proto::triggerer_link_server::{TriggererLink, TriggererLinkServer};
use crate::triggerer::{Connection, ProcessHost, TriggererConfig, TriggererHost};

/// Why a triggerer pod stops when the scheduler ends its link (it needs the pod no more).
pub const ENDED_BY_SCHEDULER: &str = "the scheduler ended the link";

/// The variable carrying a triggerer pod's token (from its Secret).
pub const TOKEN_ENV: &str = "LEOFLOW_TRIGGERER_TOKEN";

/// The triggerer pods a scheduler created and waits for: the digest of each one's token, and
/// where its connection goes once it calls. A token is good for one call.
#[derive(Clone, Default)]
pub struct Links {
    waiting: Arc<Mutex<HashMap<AttemptDigest, oneshot::Sender<Connection>>>>,
}

impl Links {
    /// Waits for the pod holding `token` to call.
    pub fn expect(&self, token: &Uuid) -> oneshot::Receiver<Connection> {
        let (sender, receiver) = oneshot::channel();
        self.waiting().insert(AttemptDigest::of(token), sender);
        receiver
    }

    /// Stops waiting for the pod holding `token` (it is deleted).
    pub fn forget(&self, token: &Uuid) {
        self.waiting().remove(&AttemptDigest::of(token));
    }

    /// The gRPC service triggerer pods call.
    pub fn service(&self) -> TriggererLinkServer<LinkService> {
        TriggererLinkServer::new(LinkService {
            links: self.clone(),
        })
    }

    fn waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<AttemptDigest, oneshot::Sender<Connection>>> {
        self.waiting.lock().expect("not poisoned")
    }
}

/// `TriggererLink`, served beside the task agents' service on the scheduler's gRPC port.
pub struct LinkService {
    links: Links,
}

/// The stream of request lines down to a pod.
type Lines = Pin<Box<dyn Stream<Item = Result<TriggererLine, Status>> + Send>>;

#[tonic::async_trait]
impl TriggererLink for LinkService {
    type LinkStream = Lines;

    async fn link(
        &self,
        request: Request<Streaming<TriggererLine>>,
    ) -> Result<Response<Lines>, Status> {
        let token = bearer(&request)?;
        let waiting = self.links.waiting().remove(&AttemptDigest::of(&token));
        let Some(waiting) = waiting else {
            return Err(Status::unavailable(
                "this scheduler waits for no triggerer pod with this token: it does not lead, \
                 or the pod was created by a leader before it (which its successor replaces)",
            ));
        };
        let mut inbound = request.into_inner();
        let (requests, outbound) = mpsc::unbounded_channel::<String>();
        let (replied, replies) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = inbound.message().await {
                if replied.send(line.json).is_err() {
                    return;
                }
            }
        });
        waiting
            .send(Connection { requests, replies })
            .map_err(|_| Status::unavailable("the scheduler stopped waiting for this pod"))?;
        Ok(Response::new(Box::pin(lines(outbound).map(Ok))))
    }
}

/// The token of a call's `authorization: Bearer` header.
fn bearer<T>(request: &Request<T>) -> Result<Uuid, Status> {
    request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| Uuid::parse_str(token).ok())
        .ok_or_else(|| Status::unauthenticated("a triggerer pod calls with its Bearer token"))
}

/// The lines `receiver` gets, as a stream of messages.
fn lines(receiver: mpsc::UnboundedReceiver<String>) -> impl Stream<Item = TriggererLine> + Send {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        let json = receiver.recv().await?;
        Some((TriggererLine { json }, receiver))
    })
}

/// What `leoflow triggerer` (in a pod) needs.
#[derive(Debug, Clone)]
pub struct PodTriggererConfig {
    /// The scheduler's gRPC endpoint (as task agents call it).
    pub endpoint: String,
    /// The pod's token.
    pub token: String,
    /// The CA (PEM) an `https://` endpoint is verified with (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// How the triggerer's Python starts (the image's).
    pub triggerer: TriggererConfig,
    /// How long the call is retried while no scheduler takes it (the Service may route it to
    /// one that does not lead).
    pub retry_budget: Duration,
}

/// Calls the scheduler, then runs the triggerer process and relays between the two until
/// either ends (the pod then ends; the scheduler starts another when it still needs one).
pub async fn serve(config: PodTriggererConfig) -> Result<(), AgentError> {
    let (up, mut down) = call(&config).await?;
    let mut process = ProcessHost::new(config.triggerer.clone());
    let Connection {
        requests,
        mut replies,
    } = process
        .connect()
        .await
        .map_err(|why| AgentError::Invalid(format!("cannot start the triggerer: {why}")))?;
    let why = loop {
        tokio::select! {
            line = down.message() => match line {
                Ok(Some(line)) => {
                    if requests.send(line.json).is_err() {
                        break "the triggerer process stopped reading".to_owned();
                    }
                }
                Ok(None) => break ENDED_BY_SCHEDULER.to_owned(),
                Err(status) => break format!("the link broke: {}", status.message()),
            },
            reply = replies.recv() => match reply {
                Some(line) => {
                    if up.send(line).is_err() {
                        break "the link closed".to_owned();
                    }
                }
                None => break "the triggerer process ended".to_owned(),
            },
        }
    };
    process.disconnect(&why).await;
    Err(AgentError::Terminated(why))
}

/// Opens the link: the lines to send up, the stream of lines coming down. Retried while the
/// scheduler is unreachable or does not take it (another replica), within the budget.
async fn call(
    config: &PodTriggererConfig,
) -> Result<(mpsc::UnboundedSender<String>, Streaming<TriggererLine>), AgentError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        // A new channel each time: the Service may send a new connection to another replica.
        let mut client =
            TriggererLinkClient::new(channel(&config.endpoint, config.ca_file.as_deref())?)
                .max_decoding_message_size(crate::MAX_AGENT_MESSAGE)
                .max_encoding_message_size(crate::MAX_AGENT_MESSAGE);
        let (up, outbound) = mpsc::unbounded_channel();
        let mut request = Request::new(lines(outbound));
        let header = format!("Bearer {}", config.token)
            .parse()
            .map_err(|_| AgentError::Refused(format!("{TOKEN_ENV} is not a token")))?;
        request.metadata_mut().insert("authorization", header);
        let status = match client.link(request).await {
            Ok(response) => return Ok((up, response.into_inner())),
            Err(status) => status,
        };
        if !matches!(status.code(), Code::Unavailable | Code::Unknown) {
            return Err(AgentError::Refused(status.message().to_owned()));
        }
        if started.elapsed() + pause > config.retry_budget {
            return Err(AgentError::Unreachable {
                endpoint: config.endpoint.clone(),
                seconds: config.retry_budget.as_secs(),
                last: status.message().to_owned(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
