//! `leoflow audit`: who did what, read from the event log. Each event records its actor (the
//! subject, their display name, tenant, client address and credential id); this lists the
//! events people and machines caused, filtered in SQL by actor, tenant, resource, action and
//! time.

use std::net::IpAddr;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Result, bail};
use chrono::{DateTime, Duration, Utc};
use clap::Args;
use leoflow_events::RecordedEvent;
use leoflow_projector::read::audit_log::{self, LogFilter, columns};
use leoflow_projector::read::filter::Conditions;
use leoflow_projector::read::page::Window;
use serde::Serialize;

use crate::commands::events::{FeedStart, read_feed};
use crate::datastore::DatastoreArgs;
use crate::output::{Output, Table};
use crate::remote::{Remote, RemoteArgs};

/// `leoflow audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events of this actor: a username, `token:<id>` for an API token, or a component
    /// (`scheduler`, `agent`, `cli`).
    #[arg(long, value_name = "SUBJECT")]
    actor: Option<String>,
    /// Only events caused in this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only events of this resource: a DAG id (the DAG, its runs and task instances; another
    /// tenant's DAG by its key, `acme:etl`, for who sees every tenant) or a stream, e.g.
    /// `dag:etl`, `run:etl/manual__2026-11-23T10:00:00+00:00`, `variable:key`.
    #[arg(long, value_name = "DAG_ID|STREAM")]
    resource: Option<Resource>,
    /// Only events of this type (repeatable), e.g. --action VariableSet.
    #[arg(long = "action", value_name = "EVENT_TYPE")]
    actions: Vec<String>,
    /// Only events recorded at or after this time: RFC 3339, or a duration ago (90s, 15m,
    /// 1h, 7d).
    #[arg(long, value_name = "TIME|DURATION")]
    since: Option<When>,
    /// Only events recorded at or before this time (as --since).
    #[arg(long, value_name = "TIME|DURATION")]
    until: Option<When>,
    /// How many events at most: the latest that match, listed oldest first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
    limit: i64,
    /// `table` for people, `json` or `yaml` (a list of objects) for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// What `--resource` names. Airflow's DAG ids cannot hold a `:`, and every stream name does;
/// a DAG of a tenant other than the default is keyed `tenant:dag_id`, told from a stream by
/// its first part, which is no stream's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    /// A DAG with its runs and task instances.
    Dag(String),
    /// One stream.
    Stream(String),
}

/// Whether `tenant:name` is a DAG's key ([`leoflow_events::dag_key`]) rather than a stream.
fn is_dag_key(tenant: &str, name: &str) -> bool {
    !leoflow_events::catalog::STREAM_KINDS.contains(&tenant)
        && leoflow_events::check_tenant(tenant).is_ok()
        && !name.is_empty()
        && !name.contains([':', '/', '|'])
}

impl FromStr for Resource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if !s.is_empty() => Ok(Resource::Dag(s.to_owned())),
            Some((tenant, name)) if is_dag_key(tenant, name) => Ok(Resource::Dag(s.to_owned())),
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                Ok(Resource::Stream(s.to_owned()))
            }
            _ => Err(format!(
                "{s:?} is neither a DAG id nor a stream; e.g. etl, dag:etl or variable:key"
            )),
        }
    }
}

/// A point in time given as an RFC 3339 time or as a duration before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct When(DateTime<Utc>);

impl When {
    fn parse(s: &str, now: DateTime<Utc>) -> Result<Self, String> {
        if let Ok(time) = DateTime::parse_from_rfc3339(s) {
            return Ok(When(time.with_timezone(&Utc)));
        }
        let ago = leoflow_authoring::config::parse_duration(s).map_err(|_| {
            format!(
                "{s:?} is neither an RFC 3339 time nor a duration; \
                 e.g. 2026-11-23T10:00:00Z, 15m, 1h or 7d"
            )
        })?;
        Duration::try_milliseconds((ago * 1000.0) as i64)
            .and_then(|ago| now.checked_sub_signed(ago))
            .map(When)
            .ok_or_else(|| format!("{s:?} reaches before any time Leoflow can record"))
    }
}

impl FromStr for When {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        When::parse(s, Utc::now())
    }
}

/// One event as `leoflow audit --output json` prints it. Never holds a secret: the credential
/// is named by its id.
#[derive(Debug, Serialize)]
struct AuditEntry {
    position: i64,
    time: DateTime<Utc>,
    /// The subject.
    actor: Option<String>,
    display_name: Option<String>,
    tenant: Option<String>,
    client: Option<IpAddr>,
    token_id: Option<String>,
    /// The event type.
    action: String,
    /// The stream it changed.
    resource: String,
}

impl From<RecordedEvent> for AuditEntry {
    fn from(event: RecordedEvent) -> Self {
        let metadata = event.metadata;
        AuditEntry {
            position: event.position,
            time: event.recorded_at,
            actor: metadata.actor,
            display_name: metadata.display_name,
            tenant: metadata.tenant,
            client: metadata.client,
            token_id: metadata.token_id,
            action: event.event_type,
            resource: event.stream,
        }
    }
}

impl AuditEntry {
    /// The name people know the actor by.
    fn shown_actor(&self) -> &str {
        self.display_name
            .as_deref()
            .or(self.actor.as_deref())
            .unwrap_or("-")
    }
}

/// Runs `leoflow audit`: against a server when one is named or current (what the caller's
/// audit log shows them), else on the database.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    args: AuditArgs,
) -> Result<ExitCode> {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since.0 > until.0
    {
        bail!(
            "--since ({}) is after --until ({}): no event can match",
            since.0.to_rfc3339(),
            until.0.to_rfc3339()
        );
    }
    let filter = filter(&args);
    let entries = match remote.remote(datastore)? {
        Some(server) => on_server(&server, &filter, args.limit).await?,
        None => {
            let mut conditions = Conditions::new();
            filter.narrow(&mut conditions);
            let database = datastore.open().await?;
            let window = Window {
                limit: args.limit,
                offset: 0,
            };
            // The latest that match, newest first by the primary key; shown oldest first.
            let order = format!("{} DESC", columns::POSITION);
            let mut rows = audit_log::entries(&database.pool, &conditions, &order, window).await?;
            rows.reverse();
            rows.into_iter()
                .map(|row| AuditEntry::from(row.recorded()))
                .collect()
        }
    };
    args.output.print(entries.as_slice(), table);
    Ok(ExitCode::SUCCESS)
}

/// The latest `limit` events that match, from the server's event feed.
async fn on_server(server: &Remote, filter: &LogFilter, limit: i64) -> Result<Vec<AuditEntry>> {
    let mut entries = Vec::new();
    read_feed(server, filter, FeedStart::Last(limit), false, |event| {
        entries.push(AuditEntry::from(event));
    })
    .await?;
    Ok(entries)
}

/// The options as a filter of the log.
fn filter(args: &AuditArgs) -> LogFilter {
    let (dag_id, stream) = match &args.resource {
        Some(Resource::Dag(dag_id)) => (Some(dag_id.clone()), None),
        Some(Resource::Stream(stream)) => (None, Some(stream.clone())),
        None => (None, None),
    };
    LogFilter {
        actor: args.actor.clone(),
        tenant: args.tenant.clone(),
        dag_id,
        run_id: None,
        stream,
        types: args.actions.clone(),
        since: args.since.map(|w| w.0),
        until: args.until.map(|w| w.0),
    }
}

fn table(entries: &[AuditEntry]) -> Table {
    let mut table = Table::new(&[
        "POSITION", "TIME", "ACTOR", "TENANT", "CLIENT", "ACTION", "RESOURCE",
    ]);
    for e in entries {
        table.row([
            e.position.to_string(),
            e.time.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
            e.shown_actor().to_owned(),
            e.tenant.clone().unwrap_or_else(|| "-".into()),
            e.client.map_or_else(|| "-".into(), |ip| ip.to_string()),
            e.action.clone(),
            e.resource.clone(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-04T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_time_is_rfc_3339_or_a_duration_ago() {
        assert_eq!(
            When::parse("2026-11-23T10:00:00+01:00", now()).unwrap().0,
            "2026-11-23T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            When::parse("1h30m", now()).unwrap().0,
            "2026-12-04T10:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let refused = When::parse("yesterday", now()).unwrap_err();
        assert!(
            refused.contains("neither an RFC 3339 time nor a duration"),
            "{refused}"
        );
    }

    #[test]
    fn a_resource_is_a_dag_id_or_a_stream() {
        assert_eq!("etl".parse(), Ok(Resource::Dag("etl".into())));
        assert_eq!(
            "run:etl/manual__1".parse(),
            Ok(Resource::Stream("run:etl/manual__1".into()))
        );
        assert_eq!("acme:etl".parse(), Ok(Resource::Dag("acme:etl".into())));
        assert_eq!(
            "dag:acme:etl".parse(),
            Ok(Resource::Stream("dag:acme:etl".into()))
        );
        assert_eq!(
            "variable:key".parse(),
            Ok(Resource::Stream("variable:key".into()))
        );
        assert!("dag:".parse::<Resource>().is_err());
        assert!("".parse::<Resource>().is_err());
    }
}
