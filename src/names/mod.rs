//! The grammars of names that the configuration, the protocol and the policy all read: topic
//! names ([`topic`]) and browser origin patterns ([`origin`]).
//!
//! A leaf: nothing here imports from the rest of the crate, so `config` can check a setting
//! against the same rules `pubsub` and `auth` apply, and the dependencies still point one way
//! (`pubsub`, `auth` -> `config` -> `names`).

pub mod origin;
pub mod topic;
