//! The two reference CNNs of the protocol (`pamap2`, `celeba`), written against the `Backend` trait.
