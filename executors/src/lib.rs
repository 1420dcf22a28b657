//! Executors run task attempts. An executor starts one **task agent** per attempt (a host
//! subprocess in Lite); the agent talks to the control plane over gRPC ([`proto`]) with the
//! attempt's token, runs the task through the SDK's Python task runner, and reports back.
//!
//! - [`Executor`]: what the scheduler hands attempts to, and how it stops them.
//! - [`subprocess::SubprocessExecutor`]: Lite's adapter: `leoflow agent` as a child process.
//! - [`kubernetes::PodExecutor`]: `leoflow agent` in one Kubernetes pod per attempt.
//! - [`triggerer`]: Airflow's triggers other than time triggers, in one supervised Python
//!   process.
//! - [`agent`]: the agent itself (`leoflow agent`), client side of the protocol.
//! - [`protocol`]: the messages the agent and the SDK's Python task runner exchange.

#![warn(missing_docs)]

pub mod agent;
mod attempt;
mod command;
pub mod kubernetes;
pub mod protocol;
pub mod subprocess;
pub mod triggerer;
pub mod triggerer_link;
pub mod zygote;

pub use attempt::{Attempt, AttemptExit, AttemptKey, Executor, Placement, Room};
pub use command::AgentConfig;

/// The largest gRPC message either side of the agent protocol sends or accepts (tonic's
/// default is 4 MiB for receiving, unlimited for sending): explicit and the same on both
/// sides, above the largest XCom the control plane takes, so an oversized value meets a clear
/// refusal rather than a transport error the agent would retry.
pub const MAX_AGENT_MESSAGE: usize = 64 << 20;

/// The task agent protocol (`proto/agent.proto`), generated at build time.
// Generated code: prost turns agent.proto's comments into docs, and most of its messages and
// fields have none; clippy's style is not its generator's.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("leoflow.agent.v1");
}
