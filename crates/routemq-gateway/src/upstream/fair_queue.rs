//! Waiting requests of one service, served one caller at a time in turn
//! (round robin over callers, first come first served within a caller), so
//! one caller's flood does not push a light caller of the same service to
//! the back of a long line.

use std::collections::{HashMap, VecDeque};

/// A caller's key: a hash of its verified identity or anonymous key.
pub type Caller = u64;

#[derive(Debug)]
pub struct FairQueue<T> {
    /// Callers with something waiting, in the order they are served next.
    turns: VecDeque<Caller>,
    waiting: HashMap<Caller, VecDeque<(u64, T)>>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            turns: VecDeque::new(),
            waiting: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item` (known by `id`) behind `caller`'s earlier ones.
    pub fn push(&mut self, caller: Caller, id: u64, item: T) {
        let queue = self.waiting.entry(caller).or_default();
        if queue.is_empty() {
            self.turns.push_back(caller);
        }
        queue.push_back((id, item));
        self.len += 1;
    }

    /// The next caller's oldest item; that caller goes to the back of the turns.
    pub fn pop(&mut self) -> Option<T> {
        let caller = self.turns.pop_front()?;
        let queue = self.waiting.get_mut(&caller)?;
        let (_, item) = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&caller);
        } else {
            self.turns.push_back(caller);
        }
        self.len -= 1;
        Some(item)
    }

    /// Takes out the item `id` of `caller` (one that gave up waiting).
    pub fn remove(&mut self, caller: Caller, id: u64) -> Option<T> {
        let queue = self.waiting.get_mut(&caller)?;
        let at = queue.iter().position(|(queued, _)| *queued == id)?;
        let (_, item) = queue.remove(at)?;
        if queue.is_empty() {
            self.waiting.remove(&caller);
            self.turns.retain(|turn| *turn != caller);
        }
        self.len -= 1;
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::FairQueue;

    #[test]
    fn callers_are_served_in_turn_and_in_order_within_each() {
        let mut queue = FairQueue::default();
        for id in 0..5 {
            queue.push(1, id, format!("flood-{id}"));
        }
        queue.push(2, 10, "light-0".to_string());
        queue.push(3, 20, "other-0".to_string());
        queue.push(2, 11, "light-1".to_string());
        let order: Vec<String> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(
            order,
            [
                "flood-0", "light-0", "other-0", "flood-1", "light-1", "flood-2", "flood-3",
                "flood-4"
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn an_item_that_gave_up_is_removed_and_its_caller_loses_its_turn_when_empty() {
        let mut queue = FairQueue::default();
        queue.push(1, 1, "a");
        queue.push(2, 2, "b");
        queue.push(1, 3, "c");
        assert_eq!(queue.remove(2, 2), Some("b"));
        assert_eq!(queue.remove(2, 2), None);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop(), Some("a"));
        assert_eq!(queue.pop(), Some("c"));
        assert_eq!(queue.pop(), None);
    }
}
