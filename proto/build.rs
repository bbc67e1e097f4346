//! Compiles the etcd v3 protos with a pure-Rust toolchain: `protox` parses
//! them into a descriptor set and `tonic-prost-build` generates messages,
//! clients and servers, so no `protoc` is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "protos/etcdserverpb/rpc.proto",
        "protos/mvccpb/kv.proto",
        "protos/authpb/auth.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["protos"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
