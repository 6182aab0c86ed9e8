# appauth: build every binary, then a slim runtime image running as a
# non-root user. `docker compose up` (docker-compose.yml) is the whole demo.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
        -p appauth-server -p appauth-keygen -p appauth-client -p appauth-agent \
        --bins --example call-api \
 && mkdir /out \
 && cp target/release/appauth-server target/release/appauth-keygen \
       target/release/appauth-token target/release/appauth-agent \
       target/release/examples/call-api /out/

FROM debian:bookworm-slim
# curl serves the compose healthcheck; ca-certificates lets clients reach
# https servers signed by public CAs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin appauth
COPY --from=build /out/ /usr/local/bin/
USER 10001
EXPOSE 8080
CMD ["appauth-server", "--keys-dir", "/keys", "--bind", "0.0.0.0:8080"]
