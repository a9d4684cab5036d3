//! order-worker (being written)
