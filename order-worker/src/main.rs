fn main() {
    println!("order-worker: not built yet");
}
