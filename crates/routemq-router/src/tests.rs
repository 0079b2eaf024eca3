use proptest::prelude::*;

use crate::{filter_matches, Group, Qos, RouteError, RouteTable, TopicPattern};

fn reference_table() -> RouteTable<&'static str> {
    let users = Group::new("users")
        .middleware(["circuit_breaker"])
        .route("create", Qos::ExactlyOnce, "user-service")
        .route("get/{user_id}", Qos::AtLeastOnce, "user-service")
        .route("list", Qos::AtLeastOnce, "user-service");
    let orders = Group::new("orders").middleware(["circuit_breaker"]).route(
        "list/{user_id}",
        Qos::AtLeastOnce,
        "order-service",
    );
    let api_v1 = Group::new("api/v1")
        .middleware(["cors", "auth"])
        .group(users)
        .group(orders);
    let api_v2 = Group::new("api/v2").route("users/{action}", Qos::AtLeastOnce, "user-service-v2");
    let gateway = Group::new("gateway").route("health", Qos::AtMostOnce, "health");
    RouteTable::build(Group::root().group(api_v1).group(api_v2).group(gateway))
        .expect("reference table builds")
}

#[test]
fn matches_nested_group_routes_with_params_and_middleware() {
    let table = reference_table();
    let found = table.find("api/v1/users/get/42").expect("route matches");
    assert_eq!(found.route.target, "user-service");
    assert_eq!(found.params.get("user_id"), Some("42"));
    assert_eq!(found.route.middleware, ["cors", "auth", "circuit_breaker"]);
    assert_eq!(found.route.qos, Qos::AtLeastOnce);
    assert_eq!(
        found.route.pattern.to_string(),
        "api/v1/users/get/{user_id}"
    );
}

#[test]
fn unknown_and_partial_topics_do_not_match() {
    let table = reference_table();
    for topic in [
        "api/v1/users",
        "api/v1/users/get",
        "api/v1/users/get/42/extra",
        "api/v1/users/get/",
        "api/v3/users/list",
        "gateway/health/x",
        "",
    ] {
        assert!(table.find(topic).is_none(), "{topic} should not match");
    }
}

#[test]
fn backtracks_from_a_literal_branch_to_a_param_branch() {
    let table = RouteTable::build(Group::root().route("a/b/c", Qos::AtMostOnce, 1).route(
        "a/{x}/d",
        Qos::AtMostOnce,
        2,
    ))
    .expect("no overlap");
    let found = table.find("a/b/d").expect("param branch matches");
    assert_eq!(found.route.target, 2);
    assert_eq!(found.params.get("x"), Some("b"));
}

#[test]
fn duplicate_routes_are_rejected() {
    let error = RouteTable::build(
        Group::root()
            .group(Group::new("api").route("users/list", Qos::AtMostOnce, ()))
            .route("api/users/list", Qos::AtMostOnce, ()),
    )
    .expect_err("duplicate");
    assert_eq!(
        error,
        RouteError::Conflict {
            first: "api/users/list".into(),
            second: "api/users/list".into(),
            example: "api/users/list".into()
        }
    );
}

#[test]
fn overlapping_param_and_literal_routes_are_rejected_with_an_example_topic() {
    let error = RouteTable::build(
        Group::root()
            .route("users/{id}", Qos::AtMostOnce, ())
            .route("users/list", Qos::AtMostOnce, ()),
    )
    .expect_err("overlap");
    assert_eq!(
        error.to_string(),
        "route `users/list` conflicts with route `users/{id}`: both match the topic `users/list`"
    );
}

#[test]
fn invalid_patterns_are_rejected_with_the_reason() {
    for (pattern, reason) in [
        ("a//b", "empty topic level"),
        ("a/+/b", "wildcard"),
        ("a/#", "wildcard"),
        ("a/{x", "brace"),
        ("a/x{y}", "brace"),
        ("a/{1x}", "must be `{name}`"),
        ("a/{x}/{x}", "appears twice"),
        ("$SYS/x", "reserved"),
        ("a/", "empty topic level"),
    ] {
        let error = TopicPattern::parse(pattern).expect_err(pattern);
        assert!(error.to_string().contains(reason), "{pattern}: {error}");
        assert_eq!(error.pattern(), pattern);
    }
}

#[test]
fn filters_cover_each_first_level_with_the_highest_qos() {
    let table = reference_table();
    let filters: Vec<(String, Qos)> = table
        .filters()
        .iter()
        .map(|f| (f.filter.clone(), f.qos))
        .collect();
    assert_eq!(
        filters,
        [
            ("api/#".to_string(), Qos::ExactlyOnce),
            ("gateway/#".to_string(), Qos::AtMostOnce)
        ]
    );
    assert_eq!(table.filters()[0].shared("gw"), "$share/gw/api/#");
}

#[test]
fn a_leading_param_route_subscribes_to_everything_once() {
    let table = RouteTable::build(
        Group::root()
            .route("{tenant}/x", Qos::AtMostOnce, ())
            .route("api/y", Qos::ExactlyOnce, ()),
    )
    .expect("builds");
    assert_eq!(table.filters().len(), 1);
    assert_eq!(table.filters()[0].filter, "#");
    assert_eq!(table.filters()[0].qos, Qos::ExactlyOnce);
}

#[test]
fn mqtt_filter_matching_follows_the_spec() {
    assert!(filter_matches("api/#", "api/v1/users"));
    assert!(filter_matches("api/#", "api"));
    assert!(filter_matches("api/+/users", "api/v1/users"));
    assert!(!filter_matches("api/+/users", "api/v1/orders"));
    assert!(!filter_matches("api/+", "api/v1/users"));
    assert!(filter_matches("#", "anything/at/all"));
    assert!(!filter_matches("#", "$SYS/broker"));
    assert!(!filter_matches("+/x", "$SYS/x"));
    assert!(!filter_matches("gateway/health", "gateway/healthz"));
}

/// A random route tree: level names from a small alphabet so that overlaps,
/// which the builder must refuse, are common.
fn pattern_strategy() -> impl Strategy<Value = Vec<Option<String>>> {
    prop::collection::vec(
        prop_oneof![
            3 => "[a-c]".prop_map(Some),
            1 => Just(None),
        ],
        1..5,
    )
}

fn render(levels: &[Option<String>]) -> String {
    levels
        .iter()
        .enumerate()
        .map(|(index, level)| match level {
            Some(literal) => literal.clone(),
            None => format!("{{p{index}}}"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A concrete topic for a pattern, filling each parameter with `value`.
fn concrete(levels: &[Option<String>], value: &str) -> String {
    levels
        .iter()
        .map(|level| level.clone().unwrap_or_else(|| value.to_string()))
        .collect::<Vec<_>>()
        .join("/")
}

proptest! {
    #[test]
    fn every_route_matches_its_own_topics_and_no_other_routes(
        patterns in prop::collection::vec(pattern_strategy(), 1..12),
        value in "[a-z0-9%.]{1,6}",
    ) {
        let mut root = Group::root();
        for (index, levels) in patterns.iter().enumerate() {
            root = root.route(render(levels), Qos::AtMostOnce, index);
        }
        match RouteTable::build(root) {
            Ok(table) => {
                for (index, levels) in patterns.iter().enumerate() {
                    let topic = concrete(levels, &value);
                    let found = table.find(&topic).expect("own topic matches");
                    prop_assert_eq!(found.route.target, index);
                    for (position, level) in levels.iter().enumerate() {
                        if level.is_none() {
                            prop_assert_eq!(found.params.get(&format!("p{position}")), Some(value.as_str()));
                        }
                    }
                }
            }
            Err(RouteError::Conflict { example, first, second }) => {
                // The example topic really is matched by both conflicting patterns.
                let both = [first, second].map(|p| {
                    let table = RouteTable::build(Group::root().route(p, Qos::AtMostOnce, ())).expect("alone it builds");
                    table.find(&example).is_some()
                });
                prop_assert_eq!(both, [true, true]);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn find_never_panics_on_arbitrary_topics(topic in ".{0,64}") {
        let table = reference_table();
        let _ = table.find(&topic);
    }
}
