//! Matching any topic against a table never panics, and a match captures a
//! non-empty, slash-free value for every parameter of the matched route.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use routemq_router::{Group, Qos, RouteTable};

fn table() -> &'static RouteTable<u8> {
    static TABLE: OnceLock<RouteTable<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let users = Group::new("users")
            .route("create", Qos::ExactlyOnce, 1)
            .route("get/{user_id}", Qos::AtLeastOnce, 2)
            .route("list", Qos::AtLeastOnce, 3);
        let orders = Group::new("orders").route("list/{user_id}", Qos::AtLeastOnce, 4);
        let api = Group::new("api/v1").group(users).group(orders);
        let v2 = Group::new("api/v2").route("users/{action}", Qos::AtLeastOnce, 5);
        RouteTable::build(Group::root().group(api).group(v2).route("{tenant}/x/{id}", Qos::AtMostOnce, 6))
            .expect("fixed table builds")
    })
}

fuzz_target!(|topic: &str| {
    if let Some(found) = table().find(topic) {
        let names: Vec<&str> = found.route.pattern.param_names().collect();
        assert_eq!(found.params.len(), names.len());
        for (name, value) in found.params.iter() {
            assert!(names.contains(&name));
            assert!(!value.is_empty() && !value.contains('/'));
        }
    }
});
