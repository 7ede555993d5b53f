//! Channel policies: declarative per-app rules, evaluated by a pure function.
//!
//! A rule has a channel pattern and requirements on the subscriber's identity. Every rule whose
//! pattern matches must be satisfied (they are ANDed); a channel no rule matches is left to
//! the HMAC signature alone. Patterns are matched against the name without its kind prefix
//! (`private-`, `presence-`, ...), segment by segment on dots: `{name}` captures one segment, `*` matches any one,
//! `**` (last only) matches one or more remaining segments, anything else is literal.
//! Requirements may refer to captures: `tenant = "{tenant}"`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::core::channel::{ChannelKind, ChannelName};

/// One rule as configured.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name reported in denials and audit records.
    pub name: String,
    /// Channel pattern, e.g. `tenant.{tenant}.**` or `user.{id}`.
    pub channel: String,
    /// Required tenant id (a literal or `{capture}`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Required user id (a literal or `{capture}`).
    #[serde(default)]
    pub user: Option<String>,
    /// Allowed actor types; empty means any.
    #[serde(default)]
    pub actors: Vec<String>,
    /// Roles of which the subscriber needs at least one; empty means none needed.
    #[serde(default)]
    pub roles: Vec<String>,
    /// A resource the rule is about, `type:{capture}` (e.g. `escrow:{id}`); with it, the
    /// subscriber must satisfy one of `allow`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Alternatives, any of which admits the subscriber to the resource's channel.
    #[serde(default)]
    pub allow: Vec<Alternative>,
}

impl RuleConfig {
    /// A rule named `name` on `channel` with no requirements yet.
    pub fn new(name: &str, channel: &str) -> Self {
        Self {
            name: name.to_owned(),
            channel: channel.to_owned(),
            tenant: None,
            user: None,
            actors: Vec::new(),
            roles: Vec::new(),
            resource: None,
            allow: Vec::new(),
        }
    }
}

/// One way into a resource's channel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alternative {
    /// The subscriber is one of the resource's participants.
    #[serde(default)]
    pub participant: bool,
    /// The subscriber has this role.
    #[serde(default)]
    pub role: Option<String>,
    /// The resource's attributes have these values; a value may name a capture of the
    /// channel pattern (`company = "{companyId}"`: the resource's `company` is the
    /// channel's company).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A resource set by the app backend: who takes part, and its attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// User ids taking part.
    #[serde(default)]
    pub participants: Vec<String>,
    /// Attributes, e.g. `status = "DISPUTED"`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The tenant the resource belongs to, if any: its channels are then only that tenant's
    /// (a rule's `tenant` capture must name it, or else the subscriber's tenant must).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// An app's resources by `(type, id)`.
pub type Resources = HashMap<(String, String), Resource>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
    /// `*`: any one segment, captured by no name.
    Any,
    Rest,
}

/// A channel pattern as rules and `[apps.history] channels` write it, compiled: segments on
/// dots, `{name}` capturing one segment, `*` any one segment, `**` (last only) one or more
/// remaining segments, anything else literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPattern {
    segments: Vec<Segment>,
}

impl ChannelPattern {
    /// Compiles `pattern`, or says what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let raw: Vec<&str> = pattern.split('.').collect();
        let mut segments = Vec::with_capacity(raw.len());
        for (i, part) in raw.iter().enumerate() {
            let segment = if *part == "**" {
                if i + 1 != raw.len() {
                    return Err("`**` may only end a pattern".into());
                }
                Segment::Rest
            } else if *part == "*" {
                Segment::Any
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() {
                    return Err("empty capture `{}`".into());
                }
                Segment::Capture(name.to_owned())
            } else if part.is_empty() || part.contains(['{', '}', '*']) {
                return Err(format!("bad pattern segment {part:?}"));
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// Whether `name` (split on dots) matches, as a whole.
    pub fn matches(&self, name: &str) -> bool {
        let segments: Vec<&str> = name.split('.').collect();
        match_pattern(&self.segments, &segments).is_some()
    }

    fn captures(&self, name: &str) -> bool {
        self.segments.contains(&Segment::Capture(name.to_owned()))
    }
}

/// Why a rule could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {rule:?}: {message}")]
pub struct RuleError {
    rule: String,
    message: String,
}

#[derive(Clone, Debug)]
struct Rule {
    config: RuleConfig,
    pattern: ChannelPattern,
}

/// An app's compiled rules.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    rules: Vec<Rule>,
}

/// Who is subscribing: from a verified JWT, else from signed sign-in / presence data.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    /// User id.
    pub user_id: Option<&'a str>,
    /// Tenant id.
    pub tenant: Option<&'a str>,
    /// Actor type.
    pub actor: Option<&'a str>,
    /// Roles.
    pub roles: &'a [String],
}

/// The outcome of evaluating the rules for one subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `rules` are the names of the rules that matched (empty: none applied).
    Allow {
        /// Matched rules.
        rules: Vec<String>,
    },
    /// Refused by `rule`.
    Deny {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
}

impl PolicySet {
    /// Compiles configured rules, refusing malformed patterns and unknown captures.
    pub fn compile(configs: &[RuleConfig]) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(configs.len());
        for config in configs {
            let err = |message: String| RuleError {
                rule: config.name.clone(),
                message,
            };
            let pattern = ChannelPattern::parse(&config.channel).map_err(err)?;
            let resource_id = match &config.resource {
                Some(resource) => {
                    let Some((kind, id)) = resource.split_once(':') else {
                        return Err(err(format!(
                            "resource {resource:?} must be \"type:{{capture}}\""
                        )));
                    };
                    if kind.is_empty() || config.allow.is_empty() {
                        return Err(err(
                            "a resource rule needs a type and at least one `allow` alternative"
                                .into(),
                        ));
                    }
                    Some(id.to_owned())
                }
                None if !config.allow.is_empty() => {
                    return Err(err("`allow` needs `resource`".into()));
                }
                None => None,
            };
            for template in [&config.tenant, &config.user, &resource_id]
                .into_iter()
                .flatten()
            {
                if let Some(name) = template.strip_prefix('{').and_then(|t| t.strip_suffix('}'))
                    && !pattern.captures(name)
                {
                    return Err(err(format!(
                        "{template} is not captured by the channel pattern"
                    )));
                }
            }
            rules.push(Rule {
                config: config.clone(),
                pattern,
            });
        }
        Ok(Self { rules })
    }

    /// Whether a rule is about resources of type `kind` (so changing one may change a
    /// decision).
    pub fn uses_resource(&self, kind: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.config
                .resource
                .as_deref()
                .and_then(|r| r.split_once(':'))
                .is_some_and(|(k, _)| k == kind)
        })
    }

    /// Whether no rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides whether `subject` may subscribe to `channel`; `resources` are the app's.
    pub fn evaluate(
        &self,
        channel: &ChannelName,
        subject: &Subject<'_>,
        resources: &Resources,
    ) -> Decision {
        let name = unprefixed(channel);
        let segments: Vec<&str> = name.split('.').collect();
        let mut matched = Vec::new();
        for rule in &self.rules {
            let Some(captures) = match_pattern(&rule.pattern.segments, &segments) else {
                continue;
            };
            let checked = check(&rule.config, &captures, subject)
                .and_then(|()| check_resource(&rule.config, &captures, subject, resources));
            if let Err(reason) = checked {
                return Decision::Deny {
                    rule: rule.config.name.clone(),
                    reason,
                };
            }
            matched.push(rule.config.name.clone());
        }
        Decision::Allow { rules: matched }
    }
}

/// The channel name without its kind prefix.
fn unprefixed(channel: &ChannelName) -> &str {
    unprefixed_str(channel.as_str())
}

/// A name (or a pattern written like one) without its kind prefix.
fn unprefixed_str(name: &str) -> &str {
    const PREFIXES: [&str; 8] = [
        "private-encrypted-cache-",
        "private-encrypted-",
        "private-cache-",
        "presence-cache-",
        "private-",
        "presence-",
        "cache-",
        "#server-to-user-",
    ];
    if ChannelKind::of(name) == ChannelKind::Public {
        return name;
    }
    PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

fn match_pattern<'a>(
    pattern: &'a [Segment],
    segments: &[&'a str],
) -> Option<Vec<(&'a str, &'a str)>> {
    let mut captures = Vec::new();
    for (i, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Rest => return (segments.len() > i).then_some(captures),
            Segment::Literal(literal) => {
                if segments.get(i) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Capture(name) => {
                let value = segments.get(i).filter(|v| !v.is_empty())?;
                captures.push((name.as_str(), *value));
            }
            Segment::Any => {
                segments.get(i).filter(|v| !v.is_empty())?;
            }
        }
    }
    (segments.len() == pattern.len()).then_some(captures)
}

fn resolve<'a>(template: &'a str, captures: &[(&str, &'a str)]) -> &'a str {
    template
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .and_then(|name| captures.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
        .unwrap_or(template)
}

fn check_resource(
    rule: &RuleConfig,
    captures: &[(&str, &str)],
    subject: &Subject<'_>,
    resources: &Resources,
) -> Result<(), String> {
    let Some(template) = &rule.resource else {
        return Ok(());
    };
    let (kind, id) = template.split_once(':').unwrap_or((template, ""));
    let id = resolve(id, captures);
    let Some(resource) = resources.get(&(kind.to_owned(), id.to_owned())) else {
        return Err(format!("no {kind} {id:?} is known"));
    };
    if let Some(owner) = &resource.tenant {
        let claimed = match &rule.tenant {
            Some(template) => Some(resolve(template, captures)),
            None => subject.tenant,
        };
        if claimed != Some(owner.as_str()) {
            return Err(format!("{kind} {id:?} belongs to another tenant"));
        }
    }
    let admitted = rule.allow.iter().any(|alt| {
        (!alt.participant
            || subject
                .user_id
                .is_some_and(|u| resource.participants.iter().any(|p| p == u)))
            && alt
                .role
                .as_ref()
                .is_none_or(|role| subject.roles.contains(role))
            && alt.attributes.iter().all(|(k, v)| {
                resource.attributes.get(k).map(String::as_str) == Some(resolve(v, captures))
            })
    });
    if admitted {
        Ok(())
    } else {
        Err(format!(
            "not admitted to {kind} {id:?} (not a participant, or the conditions for other roles do not hold)"
        ))
    }
}

fn check(
    rule: &RuleConfig,
    captures: &[(&str, &str)],
    subject: &Subject<'_>,
) -> Result<(), String> {
    if let Some(template) = &rule.tenant {
        let required = resolve(template, captures);
        match subject.tenant {
            Some(tenant) if tenant == required => {}
            Some(tenant) => {
                return Err(format!(
                    "tenant {tenant:?} may not use tenant {required:?}'s channels"
                ));
            }
            None => return Err("the connection carries no tenant".into()),
        }
    }
    if let Some(template) = &rule.user {
        let required = resolve(template, captures);
        match subject.user_id {
            Some(user) if user == required => {}
            Some(_) => return Err("this channel belongs to another user".into()),
            None => return Err("the connection carries no user id".into()),
        }
    }
    if !rule.actors.is_empty()
        && !subject
            .actor
            .is_some_and(|a| rule.actors.iter().any(|x| x == a))
    {
        return Err(format!(
            "actor {:?} is not one of {:?}",
            subject.actor.unwrap_or("(none)"),
            rule.actors
        ));
    }
    if !rule.roles.is_empty() && !subject.roles.iter().any(|r| rule.roles.contains(r)) {
        return Err(format!("one of the roles {:?} is required", rule.roles));
    }
    Ok(())
}

/// The channel names (without a `private-`/`presence-` prefix) that rules about resources of
/// `kind` give `resource` (id `id`): each rule's channel pattern with its resource capture
/// filled by the id, its `tenant` capture by the resource's tenant, a capture an
/// alternative's attribute names (`company = "{companyId}"`) by that attribute, and any other
/// capture by the attribute of its own name. Rules whose pattern needs a value the resource
/// does not have, or ends in `**`, give nothing.
pub fn resource_channels(
    rules: &[RuleConfig],
    kind: &str,
    id: &str,
    resource: &Resource,
) -> Vec<String> {
    let capture_name = |template: &str| {
        template
            .strip_prefix('{')
            .and_then(|c| c.strip_suffix('}'))
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    for rule in rules {
        let Some((rule_kind, capture)) = rule.resource.as_deref().and_then(|r| r.split_once(':'))
        else {
            continue;
        };
        let Some(capture) = capture_name(capture) else {
            continue;
        };
        if rule_kind != kind {
            continue;
        }
        let tenant_capture = rule.tenant.as_deref().and_then(capture_name);
        let value_of = |name: &str| -> Option<&str> {
            if name == capture {
                return Some(id);
            }
            if tenant_capture.as_deref() == Some(name) {
                return resource.tenant.as_deref();
            }
            let named_by = rule.allow.iter().find_map(|alt| {
                alt.attributes
                    .iter()
                    .find(|(_, v)| capture_name(v).as_deref() == Some(name))
                    .map(|(k, _)| k)
            });
            resource
                .attributes
                .get(named_by.map_or(name, String::as_str))
                .map(String::as_str)
        };
        let filled: Option<Vec<&str>> = rule
            .channel
            .split('.')
            .map(|segment| match capture_name(segment) {
                Some(name) => value_of(&name),
                None if segment == "**" || segment == "*" => None,
                None => Some(segment),
            })
            .collect();
        if let Some(segments) = filled {
            let channel = segments.join(".");
            if !out.contains(&channel) {
                out.push(channel);
            }
        }
    }
    out
}

mod pattern;
#[cfg(test)]
mod tests;

pub use self::pattern::PrefixedPattern;
