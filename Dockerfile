# syntax=docker/dockerfile:1
# Portcullis as a container: the gateway without the demo shop, run as a non-root user.
#
#   portcullis init deploy --upstream http://api:8000 --listen 0.0.0.0:8443 --data-dir /var/lib/portcullis
#   docker build -t portcullis .
#   docker run -d --name portcullis -p 8443:8443 -v "$PWD/deploy:/etc/portcullis:ro" -v portcullis-data:/var/lib/portcullis portcullis
#   docker exec portcullis portcullis user add --email you@example.com --role editor
#
# The configuration is /etc/portcullis/gateway.toml (PORTCULLIS_CONFIG), the data
# directory the volume /var/lib/portcullis; secrets come from the environment
# (docker run --env-file: PORTCULLIS_SECRET_KEY, PORTCULLIS_SMTP_PASSWORD).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# `--no-default-features`: the demo shop is left out of a production binary.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin portcullis \
    && install -m 0755 target/release/portcullis /usr/local/bin/portcullis

FROM debian:bookworm-slim
# A system user without a shell or a login; the data directory is its own, mode 0700
# (a new named volume starts with this ownership and mode).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/portcullis \
        --shell /usr/sbin/nologin portcullis \
    && mkdir -p /etc/portcullis /var/lib/portcullis \
    && chown portcullis:portcullis /var/lib/portcullis \
    && chmod 0700 /var/lib/portcullis
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
ENV PORTCULLIS_CONFIG=/etc/portcullis/gateway.toml
VOLUME ["/var/lib/portcullis"]
EXPOSE 8443
USER 10001:10001
# No HEALTHCHECK: the slim image has no HTTP client, and adding one (curl and its
# libraries) to a security gateway's image for a probe is a poor trade. Probe
# https://HOST:8443/healthz (liveness) from the orchestrator instead.
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
