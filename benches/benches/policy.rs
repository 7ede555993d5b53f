//! `PolicySet::evaluate` on the rules a multi-tenant marketplace would configure.
//!
//! Every case evaluates the whole rule set (as the shard does on each subscribe), against
//! an app with 1,000 known resources; only the channel and the subject change.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ringcast::core::channel::ChannelName;
use ringcast::core::policy::{
    Alternative, Decision, PolicySet, Resource, Resources, RuleConfig, Subject,
};

fn rules() -> PolicySet {
    let rule = RuleConfig::new;
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
        },
        RuleConfig {
            roles: vec!["admin".into()],
            ..rule("admin-feed", "ops.**")
        },
    ])
    .expect("rules compile")
}

fn resources() -> Resources {
    (0..1000)
        .map(|i| {
            let resource = Resource {
                participants: vec![format!("buyer-{i}"), format!("seller-{i}")],
                attributes: BTreeMap::from([("status".to_owned(), "OPEN".to_owned())]),
                tenant: None,
            };
            (("escrow".to_owned(), i.to_string()), resource)
        })
        .collect()
}

fn matched(decision: &Decision) -> Result<Vec<String>, String> {
    match decision {
        Decision::Allow { rules } => Ok(rules.clone()),
        Decision::Deny { rule, .. } => Err(rule.clone()),
    }
}

/// One benchmark: a subscription and the decision it must get (matched rules, or the rule
/// that denies).
struct Case<'a> {
    name: &'static str,
    channel: &'static str,
    subject: Subject<'a>,
    expected: Result<&'static [&'static str], &'static str>,
}

fn evaluate(c: &mut Criterion) {
    let policies = rules();
    let resources = resources();
    let roles: Vec<String> = Vec::new();
    let subject = |user| Subject {
        user_id: Some(user),
        tenant: Some("t1"),
        actor: Some("user"),
        roles: &roles,
    };
    let buyer = subject("buyer-42");
    let mallory = Subject {
        tenant: Some("t2"),
        ..subject("mallory")
    };
    let cases = [
        Case {
            name: "tenant_isolation_allow",
            channel: "private-tenant.t1.orders.9",
            subject: buyer,
            expected: Ok(&["tenant-isolation"]),
        },
        Case {
            name: "tenant_isolation_deny",
            channel: "private-tenant.t1.orders.9",
            subject: mallory,
            expected: Err("tenant-isolation"),
        },
        Case {
            name: "resource_participant_allow",
            channel: "private-tenant.t1.escrow.42.chat",
            subject: buyer,
            expected: Ok(&["tenant-isolation", "escrow-chat"]),
        },
        Case {
            name: "no_rule_matches",
            channel: "presence-chat.room-42",
            subject: buyer,
            expected: Ok(&[]),
        },
    ];

    let mut group = c.benchmark_group("policy_evaluate");
    for Case {
        name,
        channel,
        subject,
        expected,
    } in cases
    {
        let channel = ChannelName::parse(channel, 200).expect("channel");
        let decision = policies.evaluate(&channel, &subject, &resources);
        let expected = expected
            .map(|rules| rules.iter().map(|r| (*r).to_owned()).collect())
            .map_err(str::to_owned);
        assert_eq!(matched(&decision), expected, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| policies.evaluate(black_box(&channel), black_box(&subject), &resources))
        });
    }
    group.finish();
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
