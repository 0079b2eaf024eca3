//! Whatever string the publish check lets through carries no character a
//! broker refuses: no C0/C1 control, no non-character, no wildcard in a
//! topic, and it fits an MQTT length prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routemq_router::{is_mqtt_string, is_valid_topic_name, MAX_STRING_BYTES};

fuzz_target!(|text: &str| {
    let string_ok = is_mqtt_string(text);
    if string_ok {
        assert!(text.len() <= MAX_STRING_BYTES);
        for c in text.chars() {
            let code = u32::from(c);
            assert!(code > 0x1F && !(0x7F..=0x9F).contains(&code), "{code:#x}");
            assert!(!(0xFDD0..=0xFDEF).contains(&code) && code & 0xFFFF < 0xFFFE, "{code:#x}");
        }
    }
    if is_valid_topic_name(text) {
        assert!(string_ok && !text.is_empty() && !text.contains(['+', '#']));
    }
});
