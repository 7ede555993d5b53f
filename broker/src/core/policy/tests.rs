//! Policy rules compiled from their config and evaluated against subjects and resources.

use super::*;

#[test]
fn resource_channels_are_filled_from_the_id_and_attributes() {
    let mut chat = RuleConfig::new("escrow-chat", "tenant.{tenant}.escrow.{id}.chat");
    chat.resource = Some("escrow:{id}".into());
    let mut feed = RuleConfig::new("escrow-feed", "escrow.{id}.**");
    feed.resource = Some("escrow:{id}".into());
    let mut other = RuleConfig::new("orders", "order.{id}");
    other.resource = Some("order:{id}".into());
    let rules = [chat, feed, other];
    let with_attribute = Resource {
        attributes: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
        ..Resource::default()
    };
    assert_eq!(
        resource_channels(&rules, "escrow", "42", &with_attribute),
        ["tenant.acme.escrow.42.chat"]
    );
    // Without a tenant the chat channel cannot be named.
    assert!(resource_channels(&rules, "escrow", "42", &Resource::default()).is_empty());
    assert_eq!(
        resource_channels(&rules, "order", "7", &Resource::default()),
        ["order.7"]
    );
}

fn rule(name: &str, channel: &str) -> RuleConfig {
    RuleConfig::new(name, channel)
}

/// The rules a multi-tenant marketplace would configure.
fn marketplace() -> PolicySet {
    PolicySet::compile(&[
        RuleConfig {
            tenant: Some("{tenant}".into()),
            ..rule("tenant-isolation", "tenant.{tenant}.**")
        },
        RuleConfig {
            user: Some("{id}".into()),
            ..rule("tenant-personal", "tenant.{tenant}.user.{id}")
        },
        RuleConfig {
            user: Some("{id}".into()),
            actors: vec!["user".into()],
            ..rule("personal", "user.{id}")
        },
        RuleConfig {
            user: Some("{id}".into()),
            ..rule("laravel-user", "App.Models.User.{id}")
        },
        RuleConfig {
            user: Some("{id}".into()),
            actors: vec!["worker".into()],
            ..rule("worker", "worker.{id}")
        },
        RuleConfig {
            actors: vec!["user".into(), "worker".into()],
            ..rule("group", "group.{room}")
        },
        RuleConfig {
            roles: vec!["admin".into()],
            ..rule("admin-feed", "ops.**")
        },
    ])
    .unwrap()
}

fn name(raw: &str) -> ChannelName {
    ChannelName::parse(raw, 200).unwrap()
}

fn subject<'a>(user: &'a str, tenant: &'a str, actor: &'a str, roles: &'a [String]) -> Subject<'a> {
    Subject {
        user_id: Some(user),
        tenant: Some(tenant),
        actor: Some(actor),
        roles,
    }
}

fn denied_by(decision: Decision) -> Option<String> {
    match decision {
        Decision::Deny { rule, .. } => Some(rule),
        Decision::Allow { .. } => None,
    }
}

#[test]
fn tenant_channels_are_only_for_that_tenant_with_or_without_prefix() {
    let p = marketplace();
    let alice = subject("alice", "t1", "user", &[]);
    for channel in [
        "tenant.t1.orders.9",
        "private-tenant.t1.orders.9",
        "presence-tenant.t1.orders.9.chat",
    ] {
        assert_eq!(
            denied_by(p.evaluate(&name(channel), &alice, &Resources::new())),
            None,
            "{channel}"
        );
    }
    let mallory = subject("mallory", "t2", "user", &[]);
    for channel in ["tenant.t1.orders.9", "private-tenant.t1.orders.9.chat"] {
        assert_eq!(
            denied_by(p.evaluate(&name(channel), &mallory, &Resources::new())).as_deref(),
            Some("tenant-isolation")
        );
    }
    let anonymous = Subject::default();
    assert_eq!(
        denied_by(p.evaluate(
            &name("private-tenant.t1.orders.9"),
            &anonymous,
            &Resources::new()
        ))
        .as_deref(),
        Some("tenant-isolation")
    );
    // `tenant.t1` alone is not a tenant resource channel: `**` needs at least one segment.
    assert_eq!(
        denied_by(p.evaluate(&name("tenant.t1"), &anonymous, &Resources::new())),
        None
    );
}

#[test]
fn personal_channels_are_self_only() {
    let p = marketplace();
    let alice = subject("alice", "t1", "user", &[]);
    assert_eq!(
        denied_by(p.evaluate(&name("private-user.alice"), &alice, &Resources::new())),
        None
    );
    assert_eq!(
        denied_by(p.evaluate(&name("private-user.bob"), &alice, &Resources::new())).as_deref(),
        Some("personal")
    );
    assert_eq!(
        denied_by(p.evaluate(
            &name("private-App.Models.User.alice"),
            &alice,
            &Resources::new()
        )),
        None
    );
    assert_eq!(
        denied_by(p.evaluate(
            &name("private-App.Models.User.7"),
            &alice,
            &Resources::new()
        ))
        .as_deref(),
        Some("laravel-user")
    );
    assert_eq!(
        denied_by(p.evaluate(
            &name("private-tenant.t1.user.alice"),
            &alice,
            &Resources::new()
        )),
        None
    );
    assert_eq!(
        denied_by(p.evaluate(
            &name("private-tenant.t1.user.bob"),
            &alice,
            &Resources::new()
        ))
        .as_deref(),
        Some("tenant-personal")
    );
}

#[test]
fn actor_types_separate_users_and_workers() {
    let p = marketplace();
    let worker = subject("w1", "t1", "worker", &[]);
    assert_eq!(
        denied_by(p.evaluate(&name("private-user.w1"), &worker, &Resources::new())).as_deref(),
        Some("personal")
    );
    assert_eq!(
        denied_by(p.evaluate(&name("private-worker.w1"), &worker, &Resources::new())),
        None
    );
    let user = subject("w1", "t1", "user", &[]);
    assert_eq!(
        denied_by(p.evaluate(&name("private-worker.w1"), &user, &Resources::new())).as_deref(),
        Some("worker")
    );
    for subject in [worker, user] {
        assert_eq!(
            denied_by(p.evaluate(&name("presence-group.lobby"), &subject, &Resources::new())),
            None
        );
    }
    let bot = subject("b", "t1", "bot", &[]);
    assert_eq!(
        denied_by(p.evaluate(&name("presence-group.lobby"), &bot, &Resources::new())).as_deref(),
        Some("group")
    );
}

#[test]
fn roles_allow_when_any_matches() {
    let p = marketplace();
    let admin = ["support".to_owned(), "admin".to_owned()];
    assert_eq!(
        denied_by(p.evaluate(
            &name("private-ops.alerts"),
            &subject("a", "t", "user", &admin),
            &Resources::new()
        )),
        None
    );
    assert_eq!(
        denied_by(p.evaluate(
            &name("private-ops.alerts"),
            &subject("a", "t", "user", &[]),
            &Resources::new()
        ))
        .as_deref(),
        Some("admin-feed")
    );
}

#[test]
fn unmatched_channels_are_left_to_the_signature_and_matches_are_reported() {
    let p = marketplace();
    assert_eq!(
        p.evaluate(&name("news"), &Subject::default(), &Resources::new()),
        Decision::Allow { rules: vec![] }
    );
    let alice = subject("alice", "t1", "user", &[]);
    let Decision::Allow { rules } = p.evaluate(
        &name("private-tenant.t1.user.alice"),
        &alice,
        &Resources::new(),
    ) else {
        panic!()
    };
    assert_eq!(rules, ["tenant-isolation", "tenant-personal"]);
}

#[test]
fn malformed_rules_are_refused_at_load() {
    for (pattern, user) in [
        ("a.**.b", None),
        ("a.{}", None),
        ("a..b", None),
        ("a.b*", None),
        ("user.{id}", Some("{other}")),
    ] {
        let config = RuleConfig {
            user: user.map(str::to_owned),
            ..rule("bad", pattern)
        };
        assert!(PolicySet::compile(&[config]).is_err(), "{pattern}");
    }
}

fn escrow_rule() -> PolicySet {
    PolicySet::compile(&[RuleConfig {
        tenant: Some("{tenant}".into()),
        resource: Some("escrow:{id}".into()),
        allow: vec![
            Alternative {
                participant: true,
                role: None,
                attributes: BTreeMap::new(),
            },
            Alternative {
                participant: false,
                role: Some("admin".into()),
                attributes: BTreeMap::from([("status".to_owned(), "DISPUTED".to_owned())]),
            },
        ],
        ..rule("escrow-chat", "tenant.{tenant}.escrow.{id}.chat")
    }])
    .unwrap()
}

#[test]
fn escrow_chat_is_for_participants_and_for_admins_only_while_disputed() {
    let p = escrow_rule();
    let mut resources = Resources::new();
    let mut escrow = Resource {
        participants: vec!["buyer".into(), "seller".into()],
        attributes: BTreeMap::from([("status".to_owned(), "OPEN".to_owned())]),
        tenant: None,
    };
    resources.insert(("escrow".into(), "42".into()), escrow.clone());
    let chat = name("private-tenant.t1.escrow.42.chat");
    let admin_roles = ["admin".to_owned()];
    let buyer = subject("buyer", "t1", "user", &[]);
    let admin = subject("root", "t1", "user", &admin_roles);
    let stranger = subject("eve", "t1", "user", &[]);
    assert_eq!(denied_by(p.evaluate(&chat, &buyer, &resources)), None);
    assert_eq!(
        denied_by(p.evaluate(&chat, &admin, &resources)).as_deref(),
        Some("escrow-chat")
    );
    assert_eq!(
        denied_by(p.evaluate(&chat, &stranger, &resources)).as_deref(),
        Some("escrow-chat")
    );
    escrow.attributes.insert("status".into(), "DISPUTED".into());
    resources.insert(("escrow".into(), "42".into()), escrow);
    assert_eq!(denied_by(p.evaluate(&chat, &admin, &resources)), None);
    assert_eq!(
        denied_by(p.evaluate(&chat, &stranger, &resources)).as_deref(),
        Some("escrow-chat")
    );
    // Another tenant's admin stays out even while disputed.
    let other_admin = subject("root", "t2", "user", &admin_roles);
    assert_eq!(
        denied_by(p.evaluate(&chat, &other_admin, &resources)).as_deref(),
        Some("escrow-chat")
    );
    // Unknown escrows admit nobody.
    assert!(
        denied_by(p.evaluate(
            &name("private-tenant.t1.escrow.43.chat"),
            &buyer,
            &resources
        ))
        .is_some()
    );
}

#[test]
fn resource_rules_must_be_complete() {
    let no_allow = RuleConfig {
        resource: Some("escrow:{id}".into()),
        ..rule("r", "escrow.{id}")
    };
    assert!(PolicySet::compile(&[no_allow]).is_err());
    let uncaptured = RuleConfig {
        resource: Some("escrow:{other}".into()),
        allow: vec![Alternative {
            participant: true,
            role: None,
            attributes: BTreeMap::new(),
        }],
        ..rule("r", "escrow.{id}")
    };
    assert!(PolicySet::compile(&[uncaptured]).is_err());
}

#[test]
fn a_tenant_rule_names_the_chat_channel_from_the_resources_tenant() {
    let mut chat = RuleConfig::new("escrow-chat", "tenant.{tenant}.escrow.{id}.chat");
    chat.tenant = Some("{tenant}".into());
    chat.resource = Some("escrow:{id}".into());
    let escrow = Resource {
        tenant: Some("acme".into()),
        ..Resource::default()
    };
    assert_eq!(
        resource_channels(&[chat], "escrow", "42", &escrow),
        ["tenant.acme.escrow.42.chat"]
    );
}

/// "The conversation belongs to this company and the user is a participant."
fn conversation_rule() -> RuleConfig {
    RuleConfig {
        resource: Some("conversation:{id}".into()),
        allow: vec![Alternative {
            participant: true,
            role: None,
            attributes: BTreeMap::from([("company".to_owned(), "{companyId}".to_owned())]),
        }],
        ..rule("company-chat", "chat.{companyId}.conversation.{id}")
    }
}

#[test]
fn attributes_may_reference_captures() {
    let p = PolicySet::compile(&[conversation_rule()]).unwrap();
    let mut resources = Resources::new();
    let conversation = Resource {
        participants: vec!["ann".into()],
        attributes: BTreeMap::from([("company".to_owned(), "c1".to_owned())]),
        tenant: None,
    };
    resources.insert(("conversation".into(), "9".into()), conversation.clone());
    let ann = subject("ann", "t1", "user", &[]);
    let bob = subject("bob", "t1", "user", &[]);
    let own = name("private-chat.c1.conversation.9");
    assert_eq!(denied_by(p.evaluate(&own, &ann, &resources)), None);
    assert!(denied_by(p.evaluate(&own, &bob, &resources)).is_some());
    // The same conversation id under another company's prefix admits nobody.
    let other = name("private-chat.c2.conversation.9");
    assert!(denied_by(p.evaluate(&other, &ann, &resources)).is_some());
    assert_eq!(
        resource_channels(&[conversation_rule()], "conversation", "9", &conversation),
        ["chat.c1.conversation.9"]
    );
}

#[test]
fn a_resource_scoped_to_a_tenant_is_refused_under_another_tenants_channel() {
    let p = escrow_rule();
    let mut resources = Resources::new();
    resources.insert(
        ("escrow".into(), "42".into()),
        Resource {
            participants: vec!["buyer".into()],
            attributes: BTreeMap::new(),
            tenant: Some("t1".into()),
        },
    );
    let buyer_t1 = subject("buyer", "t1", "user", &[]);
    let buyer_t2 = subject("buyer", "t2", "user", &[]);
    let t1 = name("private-tenant.t1.escrow.42.chat");
    let t2 = name("private-tenant.t2.escrow.42.chat");
    assert_eq!(denied_by(p.evaluate(&t1, &buyer_t1, &resources)), None);
    let refused = p.evaluate(&t2, &buyer_t2, &resources);
    assert!(
        matches!(&refused, Decision::Deny { reason, .. } if reason.contains("another tenant")),
        "{refused:?}"
    );
}
