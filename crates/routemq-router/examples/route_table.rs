//! Build a route table from nested groups and match topics against it.
//!
//! ```sh
//! cargo run -p routemq-router --example route_table
//! ```

use routemq_router::{Group, Qos, RouteTable};

fn main() -> Result<(), routemq_router::RouteError> {
    let users = Group::new("users")
        .middleware(["circuit_breaker"])
        .route("get/{user_id}", Qos::AtLeastOnce, "user-service")
        .route("list", Qos::AtLeastOnce, "user-service");
    let api = Group::new("api/v1").middleware(["auth"]).group(users);
    let table = RouteTable::build(Group::root().group(api))?;

    for filter in table.filters() {
        println!("subscribe {} at qos {:?}", filter.shared("gw"), filter.qos);
    }
    for topic in [
        "api/v1/users/get/42",
        "api/v1/users/list",
        "api/v1/users/delete/42",
    ] {
        match table.find(topic) {
            Some(found) => println!(
                "{topic} -> {} via {:?}, user_id = {:?}",
                found.route.target,
                found.route.middleware,
                found.params.get("user_id")
            ),
            None => println!("{topic} -> no route (404)"),
        }
    }

    // Two routes that could match the same topic are refused when the table is built.
    let ambiguous = Group::root()
        .route("users/{id}", Qos::AtMostOnce, "a")
        .route("users/list", Qos::AtMostOnce, "b");
    if let Err(error) = RouteTable::build(ambiguous) {
        println!("refused: {error}");
    }
    Ok(())
}
