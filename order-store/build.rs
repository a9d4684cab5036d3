//! The migrations are embedded at compile time (`refinery::embed_migrations!`): a change to
//! the directory must rebuild the crate.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
