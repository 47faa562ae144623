//! The SSH test fleet (being written).
