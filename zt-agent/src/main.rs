fn main() -> std::process::ExitCode {
    zt_agent::cli::main()
}
