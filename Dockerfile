# Multi-stage build: compile in the Rust image, run from a slim Debian image
# as an unprivileged user. Mount your configuration at /etc/nearcache/proxy.toml:
#   docker build -t nearcache .
#   docker run -p 6380:6380 -p 9121:9121 -v $PWD/proxy.toml:/etc/nearcache/proxy.toml:ro nearcache
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin nearcache

FROM debian:bookworm-slim
# The durable journal (failover.journal_path) needs a folder the user owns.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin nearcache && install -d -o nearcache /var/lib/nearcache
COPY --from=build /src/target/release/nearcache /usr/local/bin/nearcache
COPY proxy.toml /etc/nearcache/proxy.toml
USER nearcache
VOLUME ["/var/lib/nearcache"]
EXPOSE 6380 9121
# Inside a container the listeners must bind all interfaces; override the
# example file's loopback addresses here (or in the mounted file).
ENV NEARCACHE_LISTEN=0.0.0.0:6380 NEARCACHE_ADMIN_LISTEN=0.0.0.0:9121
ENTRYPOINT ["/usr/local/bin/nearcache", "--config", "/etc/nearcache/proxy.toml"]
