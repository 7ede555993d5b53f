//! Connections identified by the app's backend (`[apps.token_verification]`): the shard's
//! half, given the verdict the shell obtained.

use serde_json::Value;

use ringcast_shared::AuditDecision;

use super::harness::*;
use crate::core::auth::backend::{Verdict, VerifiedAnswer};
use crate::core::options::{Config, TokenVerification};
use crate::core::shard::Credentials;
use crate::core::wire::Fault;

fn with_verification(required: bool) -> impl FnOnce(&mut Config) {
    move |c| {
        c.apps[0].token_verification = Some(TokenVerification {
            url: "http://127.0.0.1:9/api/verify-token".into(),
            required,
            ..TokenVerification::default()
        });
        with_policies(c);
    }
}

fn verified(user: &str, actor: &str) -> Verdict {
    Verdict::Verified(VerifiedAnswer {
        user_id: user.into(),
        actor: actor.into(),
        tenant: Some("t1".into()),
        roles: vec!["staff".into()],
    })
}

fn refusal_text(frames: &[Value]) -> String {
    frames[0]["data"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn a_verified_answer_is_the_identity_and_policies_read_its_actor() {
    let mut cluster = Cluster::with(1, with_verification(true));
    let path = format!("/app/{KEY}");
    let verdict = verified("w1", "worker");
    let backend = Credentials::Backend {
        verdict: &verdict,
        requested_actor: Some("worker"),
    };
    let worker = cluster
        .try_connect_with(0, &path, Some("7"), backend)
        .unwrap();
    let identity = cluster.shards[0].identity(worker.key).unwrap();
    assert_eq!(identity.user_id.as_deref(), Some("w1"));
    assert_eq!(identity.actor.as_deref(), Some("worker"));
    assert_eq!(identity.tenant.as_deref(), Some("t1"));
    assert_eq!(identity.roles, ["staff"]);
    // A backend identity never expires on its own.
    assert_eq!(identity.expires_at, u64::MAX);
    cluster.recv(worker);
    let reply = cluster.subscribe_private(worker, "private-tenant.t1.jobs");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    let reply = cluster.subscribe_private(worker, "private-user.w1");
    assert_eq!(reply[0]["data"]["status"], 403, "{reply:?}");
    let records = cluster.audit();
    assert!(
        summary(&records).contains(&(
            "token".into(),
            AuditDecision::Allow,
            Some("token_verification".into())
        )),
        "{records:?}"
    );
}

#[test]
fn the_requested_actor_must_be_the_verified_one_and_absent_means_the_default() {
    let mut cluster = Cluster::with(1, with_verification(true));
    let path = format!("/app/{KEY}");
    let verdict = verified("u1", "user");
    let spoofed = Credentials::Backend {
        verdict: &verdict,
        requested_actor: Some("worker"),
    };
    let (frames, fault) = cluster
        .try_connect_with(0, &path, Some("7"), spoofed)
        .unwrap_err();
    assert_eq!(fault, Fault::Unauthorized);
    assert!(
        refusal_text(&frames).contains("actor type worker asked for, backend verified user"),
        "{frames:?}"
    );
    let records = cluster.audit();
    let denial = records
        .iter()
        .find(|r| r.decision == AuditDecision::Deny)
        .expect("the refusal is audited");
    assert_eq!(denial.rule.as_deref(), Some("token_verification"));
    assert!(denial.reason.as_deref().unwrap().contains("actor type"));

    let defaulted = Credentials::Backend {
        verdict: &verdict,
        requested_actor: None,
    };
    assert!(
        cluster
            .try_connect_with(0, &path, Some("7"), defaulted)
            .is_ok()
    );
    let worker = verified("w1", "worker");
    let defaulted = Credentials::Backend {
        verdict: &worker,
        requested_actor: None,
    };
    assert!(
        cluster
            .try_connect_with(0, &path, Some("7"), defaulted)
            .is_err()
    );
}

#[test]
fn a_refusing_backend_refuses_with_4009_and_its_reason() {
    let mut cluster = Cluster::with(1, with_verification(false));
    let verdict = Verdict::Refused("the backend answered 401".into());
    let backend = Credentials::Backend {
        verdict: &verdict,
        requested_actor: None,
    };
    let (frames, fault) = cluster
        .try_connect_with(0, &format!("/app/{KEY}"), Some("7"), backend)
        .unwrap_err();
    assert_eq!(fault, Fault::Unauthorized);
    let text = refusal_text(&frames);
    assert!(
        text.contains("backend verification refused: the backend answered 401"),
        "{text}"
    );
    let records = cluster.audit();
    assert_eq!(
        summary(&records),
        [(
            "token".into(),
            AuditDecision::Deny,
            Some("token_verification".into())
        )]
    );
}

#[test]
fn required_credentials_name_the_headers_and_optional_ones_may_be_absent() {
    let path = format!("/app/{KEY}");
    let mut strict = Cluster::with(1, with_verification(true));
    let (frames, fault) = strict
        .try_connect_with(0, &path, Some("7"), Credentials::Token(None))
        .unwrap_err();
    assert_eq!(fault, Fault::Unauthorized);
    let text = refusal_text(&frames);
    assert!(
        text.contains("access-token, session-id, authorization"),
        "{text}"
    );
    assert!(!text.contains("x-actor-type"), "{text}");
    let mut lenient = Cluster::with(1, with_verification(false));
    let anonymous = lenient
        .try_connect_with(0, &path, Some("7"), Credentials::Token(None))
        .unwrap();
    assert!(lenient.shards[0].identity(anonymous.key).is_none());
}
