//! Any string either fails to parse as a topic pattern or parses into a
//! pattern that prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use routemq_router::TopicPattern;

fuzz_target!(|text: &str| {
    if let Ok(pattern) = TopicPattern::parse(text) {
        let printed = pattern.to_string();
        assert_eq!(printed, text);
        assert_eq!(TopicPattern::parse(&printed).ok(), Some(pattern));
    }
});
