//! Send one request through the gateway and print the reply.
//!
//! ```sh
//! cargo run -p routemq-client --example request -- mqtt://127.0.0.1:1883 api/v1/users/get/42
//! ```

use std::time::Duration;

use routemq_client::{RequestClient, RequestOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let broker = args
        .next()
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    let topic = args.next().unwrap_or_else(|| "api/v1/users/get/42".into());
    let payload = args.next().unwrap_or_default();

    let client = RequestClient::connect(&broker).await?;
    let options = RequestOptions {
        timeout: Duration::from_secs(5),
        // Retries reuse the request id, so the upstream can recognise them.
        retries: 2,
        ..RequestOptions::default()
    };
    let reply = client.request(&topic, payload, &options).await?;
    println!("status {}", reply.status);
    println!("{}", serde_json::to_string_pretty(&reply.json())?);
    client.disconnect().await;
    Ok(())
}
