//! Tokens (JWT) and policies.

use std::time::Duration;

use serde_json::json;

use ringcast_shared::AuditDecision;

use super::harness::*;
use crate::core::app::Revocation;
use crate::core::auth::{hmac_key, sign_channel};
use crate::core::ids::AppIdx;
use crate::core::wire::Fault;

#[test]
fn a_required_token_must_be_present_and_valid() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let path = format!("/app/{KEY}");
    let (frames, code) = cluster
        .try_connect_with_token(0, &path, Some("7"), None)
        .unwrap_err();
    assert_eq!(code, Fault::Unauthorized);
    assert!(
        frames[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("token is required")
    );
    let expired = hs256(&json!({"sub": "u", "exp": NOW_UNIX - 1}));
    let (frames, _) = cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&expired))
        .unwrap_err();
    assert!(
        frames[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{frames:?}"
    );
    let good = hs256(
        &json!({"sub": "u1", "tenant_id": "t1", "actor": "user", "roles": ["admin"], "exp": NOW_UNIX + 60}),
    );
    let client = cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&good))
        .unwrap();
    let identity = cluster.shards[0].identity(client.key).unwrap();
    assert_eq!(identity.user_id.as_deref(), Some("u1"));
    assert_eq!(identity.tenant.as_deref(), Some("t1"));
    assert_eq!(identity.roles, ["admin"]);
}

#[test]
fn an_optional_token_may_be_absent_but_not_invalid() {
    let mut cluster = Cluster::with(1, with_jwt(false));
    let path = format!("/app/{KEY}");
    assert!(
        cluster
            .try_connect_with_token(0, &path, Some("7"), None)
            .is_ok()
    );
    let forged = hs256(&json!({"sub": "u", "exp": NOW_UNIX + 60})).replace('.', ".x");
    assert!(
        cluster
            .try_connect_with_token(0, &path, Some("7"), Some(&forged))
            .is_err()
    );
}

#[test]
fn a_live_socket_is_closed_with_4010_when_its_token_expires() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let token = hs256(&json!({"sub": "u", "exp": NOW_UNIX + 30}));
    let client = cluster
        .try_connect_with_token(0, &format!("/app/{KEY}"), Some("7"), Some(&token))
        .unwrap();
    cluster.recv(client);
    cluster.tick(Duration::from_secs(29));
    assert!(cluster.recv(client).is_empty());
    cluster.tick(Duration::from_secs(1));
    let got = cluster.recv(client);
    assert_eq!(got[0]["data"]["code"], 4010);
    assert_eq!(got[1], json!({"close": 4010}));
}

/// Connects, on shards 0, 1 and 1, sockets with tokens of these `(sub, jti)`s, revokes
/// `revocation` through shard 1 until `NOW_UNIX + 60`, and checks that exactly the first two
/// are closed with 4009.
fn revoke_two_of_three(
    cluster: &mut Cluster,
    tokens: [(&str, &str); 3],
    revocation: &Revocation,
) -> [Client; 3] {
    let path = format!("/app/{KEY}");
    let clients: [Client; 3] = std::array::from_fn(|i| {
        let (shard, (sub, jti)) = ([0, 1, 1][i], tokens[i]);
        let token = hs256(&json!({"sub": sub, "jti": jti, "exp": NOW_UNIX + 600}));
        cluster
            .try_connect_with_token(shard, &path, Some("7"), Some(&token))
            .unwrap()
    });
    for client in clients {
        cluster.recv(client);
    }
    let now = cluster.now;
    cluster.shards[1].revoke_token(AppIdx(0), revocation, NOW_UNIX + 60, NOW_UNIX, now);
    cluster.route();
    for client in &clients[..2] {
        let got = cluster.recv(*client);
        assert_eq!(got[0]["data"]["message"], "token revoked");
        assert_eq!(got[1], json!({"close": 4009}));
    }
    assert!(cluster.recv(clients[2]).is_empty());
    clients
}

/// Whether a new socket with a token of `(sub, jti)` is refused as revoked.
fn refused_as_revoked(cluster: &mut Cluster, sub: &str, jti: &str) -> bool {
    let token = hs256(&json!({"sub": sub, "jti": jti, "exp": NOW_UNIX + 600}));
    let path = format!("/app/{KEY}");
    cluster
        .try_connect_with_token(0, &path, Some("7"), Some(&token))
        .err()
        .is_some_and(|(frames, _)| {
            frames[0]["data"]["message"]
                .as_str()
                .unwrap()
                .contains("revoked")
        })
}

#[test]
fn revoking_a_token_closes_its_sockets_on_every_shard_and_refuses_it_later() {
    let mut cluster = Cluster::with(2, with_jwt(true));
    let tokens = [("u", "t-1"), ("v", "t-1"), ("u", "t-2")];
    revoke_two_of_three(&mut cluster, tokens, &Revocation::Token("t-1".into()));
    assert!(refused_as_revoked(&mut cluster, "w", "t-1"));
    assert!(!refused_as_revoked(&mut cluster, "u", "t-3"));
}

#[test]
fn revoking_a_user_closes_every_socket_of_theirs_and_refuses_their_new_tokens_until_then() {
    let mut cluster = Cluster::with(2, with_jwt(true));
    let revocation = Revocation::User("u".into());
    let tokens = [("u", "t-1"), ("u", "t-2"), ("v", "t-3")];
    let [.., c] = revoke_two_of_three(&mut cluster, tokens, &revocation);
    assert!(refused_as_revoked(&mut cluster, "u", "t-4"));
    // The revocation holds until the time given, not after.
    let app = cluster.shards[0].state().apps.get(AppIdx(0));
    let identity = cluster.shards[1].identity(c.key).unwrap().clone();
    assert!(!app.is_revoked(&identity, NOW_UNIX));
    assert_eq!(Revocation::parse(&revocation.key()), Some(revocation));
}

#[test]
fn policies_refuse_a_validly_signed_cross_tenant_presence_subscription() {
    let mut cluster = Cluster::with(1, with_policies);
    let a = cluster.connect(0);
    let channel = "presence-tenant.t1.room.1";
    let join = |cluster: &mut Cluster, tenant: &str| {
        let data = json!({"user_id": "u", "user_info": {"tenant_id": tenant, "actor": "user"}})
            .to_string();
        let auth = sign_channel(KEY, &hmac_key(SECRET), a.socket_id, channel, Some(&data));
        cluster.send(a, json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}));
        cluster.recv(a)
    };
    let reply = join(&mut cluster, "t2");
    assert_eq!(reply[0]["event"], "pusher:subscription_error");
    assert_eq!(reply[0]["data"]["status"], 403);
    assert!(
        reply[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("tenant-isolation")
    );
    let reply = join(&mut cluster, "t1");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn policies_use_the_jwt_identity_when_there_is_one() {
    let mut cluster = Cluster::with(1, |c| {
        with_policies(c);
        with_jwt(true)(c);
    });
    let token =
        hs256(&json!({"sub": "w1", "actor": "worker", "tenant_id": "t1", "exp": NOW_UNIX + 60}));
    let worker = cluster
        .try_connect_with_token(0, &format!("/app/{KEY}"), Some("7"), Some(&token))
        .unwrap();
    cluster.recv(worker);
    let reply = cluster.subscribe_private(worker, "private-user.w1");
    assert!(
        reply[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("personal"),
        "{reply:?}"
    );
    let reply = cluster.subscribe_private(worker, "private-tenant.t1.jobs");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    let reply = cluster.subscribe_private(worker, "private-tenant.t2.jobs");
    assert_eq!(reply[0]["data"]["status"], 403);
}

#[test]
fn policies_use_the_signed_in_users_info_without_jwt() {
    let mut cluster = Cluster::with(1, with_policies);
    let a = cluster.connect(0);
    cluster.signin(
        a,
        r#"{"id":"alice","user_info":{"tenant_id":"t1","actor":"user"}}"#,
    );
    let reply = cluster.subscribe_private(a, "private-tenant.t1.orders");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    let reply = cluster.subscribe_private(a, "private-tenant.t2.orders");
    assert_eq!(reply[0]["data"]["status"], 403);
    let reply = cluster.subscribe_private(a, "private-user.alice");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn audit_records_name_the_signed_in_or_presence_subject_policies_judged() {
    let mut cluster = Cluster::with(1, with_policies);
    let signed_in = cluster.connect(0);
    cluster.signin(
        signed_in,
        r#"{"id":"alice","user_info":{"tenant_id":"t1","actor":"user"}}"#,
    );
    let reply = cluster.subscribe_private(signed_in, "private-tenant.t2.orders");
    assert_eq!(reply[0]["data"]["status"], 403);
    let member = cluster.connect(0);
    let channel = "presence-tenant.t1.room.1";
    let data =
        json!({"user_id": "bob", "user_info": {"tenant_id": "t2", "actor": "admin"}}).to_string();
    let auth = sign_channel(
        KEY,
        &hmac_key(SECRET),
        member.socket_id,
        channel,
        Some(&data),
    );
    cluster.send(member, json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}));
    assert_eq!(cluster.recv(member)[0]["data"]["status"], 403);

    let records = cluster.audit();
    let denied = |channel: &str| {
        records
            .iter()
            .find(|r| r.decision == AuditDecision::Deny && r.channel.as_deref() == Some(channel))
            .unwrap_or_else(|| panic!("a denial on {channel}: {records:?}"))
    };
    let alice = denied("private-tenant.t2.orders");
    assert_eq!(
        (
            alice.user.as_deref(),
            alice.tenant.as_deref(),
            alice.actor.as_deref()
        ),
        (Some("alice"), Some("t1"), Some("user"))
    );
    let bob = denied(channel);
    assert_eq!(
        (
            bob.user.as_deref(),
            bob.tenant.as_deref(),
            bob.actor.as_deref()
        ),
        (Some("bob"), Some("t2"), Some("admin"))
    );
}

/// A connection whose token (user `u` of tenant `t1`) expires in 30 s.
fn connect_as_u_of_t1(cluster: &mut Cluster) -> Client {
    let token = hs256(&json!({"sub": "u", "tenant_id": "t1", "exp": NOW_UNIX + 30}));
    let client = cluster
        .try_connect_with_token(0, &format!("/app/{KEY}"), Some("7"), Some(&token))
        .unwrap();
    cluster.recv(client);
    client
}

#[test]
fn a_renewed_token_moves_the_expiry_and_keeps_the_socket_open() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let client = connect_as_u_of_t1(&mut cluster);
    cluster.tick(Duration::from_secs(20));
    let renewal = hs256(&json!({"sub": "u", "tenant_id": "t1", "exp": NOW_UNIX + 90}));
    cluster.send(
        client,
        json!({"event": "ringcast:renew", "data": {"token": renewal}}),
    );
    let got = cluster.recv(client);
    assert_eq!(got[0]["event"], "ringcast:renewed", "{got:?}");
    assert_eq!(inner(&got[0])["expires_at"], NOW_UNIX + 90);
    // Past the first token's expiry the socket stays; past the renewed one it closes.
    cluster.tick(Duration::from_secs(60));
    assert!(cluster.recv(client).is_empty());
    cluster.tick(Duration::from_secs(10));
    let got = cluster.recv(client);
    assert_eq!(got[0]["data"]["code"], 4010);
    let records = cluster.audit();
    assert!(
        records
            .iter()
            .any(|r| r.action == "renew" && r.decision == AuditDecision::Allow),
        "{records:?}"
    );
}

#[test]
fn a_renewal_for_another_subject_or_with_a_bad_token_is_refused_and_the_old_token_stays() {
    let mut cluster = Cluster::with(1, with_jwt(true));
    let client = connect_as_u_of_t1(&mut cluster);
    let renew = |cluster: &mut Cluster, token: &str| {
        cluster.send(
            client,
            json!({"event": "ringcast:renew", "data": {"token": token}}),
        );
        let got = cluster.recv(client);
        assert_eq!(got[0]["event"], "ringcast:renew_failed", "{got:?}");
        inner(&got[0])["reason"].as_str().unwrap().to_owned()
    };
    let other_user = hs256(&json!({"sub": "v", "tenant_id": "t1", "exp": NOW_UNIX + 90}));
    assert!(renew(&mut cluster, &other_user).contains("another user"));
    let other_tenant = hs256(&json!({"sub": "u", "tenant_id": "t2", "exp": NOW_UNIX + 90}));
    assert!(renew(&mut cluster, &other_tenant).contains("another tenant"));
    let forged = other_user.replace('.', ".x");
    assert!(renew(&mut cluster, &forged).starts_with("token refused"));
    let expired = hs256(&json!({"sub": "u", "tenant_id": "t1", "exp": NOW_UNIX - 1}));
    assert!(renew(&mut cluster, &expired).starts_with("token refused"));
    let denials = cluster
        .audit()
        .iter()
        .filter(|r| r.action == "renew" && r.decision == AuditDecision::Deny)
        .count();
    assert_eq!(denials, 4);
    // The first token still rules: the socket closes when it expires.
    cluster.tick(Duration::from_secs(30));
    assert_eq!(cluster.recv(client)[0]["data"]["code"], 4010);
}

#[test]
fn a_renewal_with_other_roles_rechecks_the_subscriptions_rules_admitted() {
    let mut cluster = Cluster::with(1, |c| {
        with_jwt(true)(c);
        c.apps[0].policies = vec![crate::core::policy::RuleConfig {
            roles: vec!["admin".into()],
            ..crate::core::policy::RuleConfig::new("ops", "ops.**")
        }];
    });
    let claims = |roles: &[&str]| hs256(&json!({"sub": "u", "roles": roles, "exp": NOW_UNIX + 60}));
    let client = cluster
        .try_connect_with_token(
            0,
            &format!("/app/{KEY}"),
            Some("7"),
            Some(&claims(&["admin"])),
        )
        .unwrap();
    cluster.recv(client);
    let reply = cluster.subscribe_private(client, "private-ops.alerts");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");
    cluster.send(
        client,
        json!({"event": "ringcast:renew", "data": {"token": claims(&["viewer"])}}),
    );
    let got = cluster.recv(client);
    assert_eq!(got[0]["event"], "ringcast:renewed", "{got:?}");
    assert_eq!(got[1]["event"], "ringcast:subscription_revoked", "{got:?}");
    assert_eq!(got[1]["channel"], "private-ops.alerts");
}
