use super::{encode_level, ReplyTopics, Verdict};
use crate::middleware::{AuthMethod, Identity};

fn user(subject: &str, issuer: Option<&str>) -> Identity {
    Identity {
        subject: subject.into(),
        issuer: issuer.map(str::to_string),
        method: AuthMethod::Jwt,
        scopes: Vec::new(),
        roles: Vec::new(),
    }
}

#[test]
fn identity_levels_bind_to_the_caller() {
    let topics = ReplyTopics::parse(&["replies/{sub}/#", "replies/anonymous/#"]).expect("parses");
    let alice = user("alice", Some("routemq"));
    assert!(topics.allows("replies/alice/1", Some(&alice)));
    assert!(topics.allows("replies/alice", Some(&alice)));
    assert!(!topics.allows("replies/bob/1", Some(&alice)));
    assert!(!topics.allows("replies/bob/1", None));
    assert!(topics.allows("replies/anonymous/c1", None));
    assert!(!topics.allows("devices/42/commands", Some(&alice)));
    assert_eq!(topics.precheck("replies/bob/1"), Verdict::NeedsIdentity);
    assert_eq!(topics.precheck("replies/anonymous/x"), Verdict::Allowed);
    assert_eq!(topics.precheck("devices/42/commands"), Verdict::Refused);
}

#[test]
fn issuer_and_subject_together() {
    let topics = ReplyTopics::parse(&["r/{iss}/{sub}/+"]).expect("parses");
    let a = user("alice", Some("https://a.example"));
    assert!(topics.allows("r/https%3A%2F%2Fa.example/alice/x", Some(&a)));
    assert!(!topics.allows("r/https%3A%2F%2Fb.example/alice/x", Some(&a)));
    assert!(!topics.allows("r/https%3A%2F%2Fa.example/alice/x/y", Some(&a)));
}

#[test]
fn encoding_keeps_one_level_and_a_bounded_length() {
    assert_eq!(encode_level("alice-1_x.y"), "alice-1_x.y");
    assert_eq!(encode_level("a/b+c#d"), "a%2Fb%2Bc%23d");
    assert_eq!(encode_level("$SYS"), "%24SYS");
    assert_eq!(encode_level("~%"), "%7E%25");
    assert_eq!(encode_level(""), "~");
    let long = "x".repeat(65);
    let hashed = encode_level(&long);
    assert!(hashed.starts_with('~') && hashed.len() == 65, "{hashed}");
    assert_ne!(hashed, encode_level(&"x".repeat(66)));
    // A subject that encodes to something a filter level would read as a wildcard cannot.
    let topics = ReplyTopics::parse(&["replies/{sub}/#"]).expect("parses");
    assert!(!topics.allows("replies/bob/1", Some(&user("+", None))));
    assert!(!topics.allows("replies/bob/1", Some(&user("#", None))));
}

#[test]
fn malformed_filters_are_refused() {
    for filter in ["a/#/b", "a/x{sub}", "$SYS/{sub}", "a/b+"] {
        assert!(ReplyTopics::parse(&[filter]).is_err(), "{filter}");
    }
    assert!(ReplyTopics::parse::<&str>(&[]).is_err());
}

#[test]
fn an_email_subject_is_its_own_level_and_the_old_form_is_accepted_while_enabled() {
    let topics = ReplyTopics::parse(&["replies/{sub}/#"]).expect("parses");
    let ada = user("ada.lovelace@example.com", None);
    assert!(topics.allows("replies/ada.lovelace@example.com/1", Some(&ada)));
    assert!(topics.allows("replies/ada.lovelace%40example.com/1", Some(&ada)));
    assert!(!topics.allows("replies/ada.lovelace%40Example.com/1", Some(&ada)));
    let org = user("org:ada", None);
    assert!(topics.allows("replies/org:ada/1", Some(&org)));
    assert!(
        !topics.allows("replies/org%3aada/1", Some(&org)),
        "hex is upper-case"
    );
    let strict = topics.with_legacy_levels(false);
    assert!(strict.allows("replies/ada.lovelace@example.com/1", Some(&ada)));
    assert!(!strict.allows("replies/ada.lovelace%40example.com/1", Some(&ada)));
}
