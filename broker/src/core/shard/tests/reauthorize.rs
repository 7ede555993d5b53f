//! Live re-authorization: a resource change takes out every subscription its rules no
//! longer admit, on every shard.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::harness::*;
use crate::core::auth::{hmac_key, sign_channel};
use crate::core::ids::AppIdx;
use crate::core::options::Config;
use crate::core::policy::{Resource, RuleConfig};
use ringcast_shared::AuditDecision;

const CHAT: &str = "presence-tenant.acme.escrow.42.chat";

/// The README's escrow rule: participants always, admins only while the escrow is disputed.
const ESCROW_RULE: &str = r#"
name = "escrow-chat"
channel = "tenant.{tenant}.escrow.{id}.chat"
tenant = "{tenant}"
resource = "escrow:{id}"
allow = [
  { participant = true },
  { role = "admin", attributes = { status = "DISPUTED" } },
]
"#;

fn with_escrow_rule(c: &mut Config) {
    c.apps[0].policies = vec![toml::from_str::<RuleConfig>(ESCROW_RULE).unwrap()];
}

fn escrow(participants: &[&str], status: &str) -> Resource {
    Resource {
        participants: participants.iter().map(|p| (*p).to_owned()).collect(),
        attributes: BTreeMap::from([("status".into(), status.into())]),
        tenant: Some("acme".into()),
    }
}

impl Cluster {
    fn set_escrow(&mut self, resource: Option<Resource>) {
        let now = self.now;
        let applied = self.shards[0].set_resource(AppIdx(0), "escrow", "42", resource, now);
        self.route();
        let answers: Vec<_> = self.shards[0].take_answers().map(|(id, _)| id).collect();
        assert_eq!(answers, [applied]);
    }

    /// Joins the chat as `user` with signed `roles`, asserting it is admitted.
    fn join_chat(&mut self, client: Client, user: &str, roles: &[&str]) {
        let data = json!({"user_id": user, "user_info": {"tenant_id": "acme", "roles": roles}})
            .to_string();
        let auth = sign_channel(KEY, &hmac_key(SECRET), client.socket_id, CHAT, Some(&data));
        self.send(
            client,
            json!({"event": "pusher:subscribe", "data": {"channel": CHAT, "auth": auth, "channel_data": data}}),
        );
        let reply = self.recv(client);
        assert_eq!(
            reply[0]["event"], "pusher_internal:subscription_succeeded",
            "{user}: {reply:?}"
        );
    }
}

fn revoked(frames: &[Value]) -> Option<Value> {
    frames
        .iter()
        .find(|f| f["event"] == "ringcast:subscription_revoked")
        .cloned()
}

fn removed_members(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["event"] == "pusher_internal:member_removed")
        .map(|f| inner(f)["user_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn an_admin_leaves_the_escrow_chat_when_it_is_no_longer_disputed_and_a_removed_seller_too() {
    let mut cluster = Cluster::with(2, with_escrow_rule);
    cluster.set_escrow(Some(escrow(&["buyer-1", "seller-9"], "DISPUTED")));
    let buyer = cluster.connect(0);
    let seller = cluster.connect(1);
    let admin = cluster.connect(1);
    cluster.join_chat(buyer, "buyer-1", &[]);
    cluster.join_chat(seller, "seller-9", &[]);
    cluster.join_chat(admin, "ops-3", &["admin"]);
    cluster.recv(buyer);
    cluster.recv(seller);
    cluster.audit();

    cluster.set_escrow(Some(escrow(&["buyer-1", "seller-9"], "RESOLVED")));
    let to_admin = cluster.recv(admin);
    let event = revoked(&to_admin).unwrap_or_else(|| panic!("{to_admin:?}"));
    assert_eq!(event["channel"], CHAT);
    assert_eq!(inner(&event)["rule"], "escrow-chat");
    assert!(
        inner(&event)["reason"].as_str().unwrap().contains("role"),
        "{event}"
    );
    assert_eq!(removed_members(&cluster.recv(buyer)), ["ops-3"]);
    assert_eq!(removed_members(&cluster.recv(seller)), ["ops-3"]);
    let records = cluster.audit();
    let record = records
        .iter()
        .find(|r| r.action == "reauthorize")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(record.decision, AuditDecision::Deny);
    assert_eq!(record.channel.as_deref(), Some(CHAT));
    assert_eq!(record.user.as_deref(), Some("ops-3"));
    assert!(
        record
            .reason
            .as_deref()
            .unwrap()
            .starts_with("escrow \"42\" changed"),
        "{record:?}"
    );

    // The withdrawn admin no longer receives the chat; the participants still do.
    cluster.publish(0, CHAT, "{}", None);
    assert_eq!(cluster.events(buyer), ["greeting"]);
    assert_eq!(cluster.events(seller), ["greeting"]);
    assert!(cluster.recv(admin).is_empty());

    cluster.set_escrow(Some(escrow(&["buyer-1"], "RESOLVED")));
    assert!(revoked(&cluster.recv(seller)).is_some());
    assert_eq!(removed_members(&cluster.recv(buyer)), ["seller-9"]);
    let members = cluster.stats(0, CHAT).subscription_count;
    assert_eq!(members, 1);
}

#[test]
fn deleting_the_resource_withdraws_everyone_it_admitted_and_signature_grants_stay() {
    let mut cluster = Cluster::with(2, with_escrow_rule);
    cluster.set_escrow(Some(escrow(&["buyer-1"], "OPEN")));
    let buyer = cluster.connect(0);
    cluster.join_chat(buyer, "buyer-1", &[]);
    // A channel no rule matches is the signature's alone and is never re-checked.
    let other = cluster.connect(1);
    let reply = cluster.subscribe_private(other, "private-orders");
    assert_eq!(reply[0]["event"], "pusher_internal:subscription_succeeded");

    cluster.set_escrow(None);
    assert!(revoked(&cluster.recv(buyer)).is_some());
    assert!(cluster.recv(other).is_empty());
    cluster.publish(1, "private-orders", "{}", None);
    assert_eq!(cluster.events(other), ["greeting"]);
}

#[test]
fn a_change_to_another_resource_kind_rechecks_nothing() {
    let mut cluster = Cluster::with(1, with_escrow_rule);
    cluster.set_escrow(Some(escrow(&["buyer-1"], "OPEN")));
    let buyer = cluster.connect(0);
    cluster.join_chat(buyer, "buyer-1", &[]);
    let now = cluster.now;
    cluster.shards[0].set_resource(AppIdx(0), "invoice", "42", None, now);
    cluster.route();
    cluster.publish(0, CHAT, "{}", None);
    assert_eq!(cluster.events(buyer), ["greeting"]);
    assert!(cluster.audit().iter().all(|r| r.action != "reauthorize"));
}
