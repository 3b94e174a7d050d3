# gaffer's image: the reconciler and the Slack bot, with what builders need inside the
# reconciler's pod (git, kubectl for `kubectl kustomize`, tmux, ripgrep, bubblewrap, the
# pinned OpenCode and BMAD, Node.js for BMAD's installer, uv). The versions are the ones
# .ci/run installs and the tests run against; it cannot be built on the development
# machines (no Docker engine there), so CI's workflow (.github/workflows/image.yml) builds it.

# --- build: the Rust toolchain of the development and CI machines (1.95) ------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schema ./schema
COPY tests ./tests
COPY examples ./examples
RUN cargo build --release --locked --bin gaffer

# --- tools: OpenCode and BMAD from npm, pinned as in .ci/run ------------------------------
FROM node:20-bookworm-slim AS tools
RUN npm install --no-audit --no-fund --prefix /opt/opencode opencode-ai@1.18.33 \
 && npm install --no-audit --no-fund --prefix /opt/bmad bmad-method@6.12.0

# --- kubectl, pinned, from the Kubernetes apt repository (signed) ----------------------------
FROM debian:bookworm-slim AS kubectl
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && mkdir -p /etc/apt/keyrings \
 && curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.32/deb/Release.key \
    | gpg --dearmor -o /etc/apt/keyrings/kubernetes.gpg \
 && echo "deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/v1.32/deb/ /" \
    > /etc/apt/sources.list.d/kubernetes.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends kubectl=1.32.4-1.1 \
 && rm -rf /var/lib/apt/lists/*

# --- runtime ------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bubblewrap ca-certificates git openssh-client python3-pip ripgrep tmux tini \
 && pip3 install --no-cache-dir --break-system-packages uv==0.13.9 \
 && apt-get purge -y python3-pip && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/gaffer gaffer
COPY --from=tools /usr/local/bin/node /usr/local/bin/node
COPY --from=tools /opt/opencode/node_modules/opencode-linux-x64/bin/opencode /usr/local/bin/opencode
COPY --from=tools /opt/bmad /opt/bmad
COPY --from=kubectl /usr/bin/kubectl /usr/local/bin/kubectl
COPY --from=build /src/target/release/gaffer /usr/local/bin/gaffer
ENV GAFFER_OPENCODE=/usr/local/bin/opencode \
    GAFFER_BMAD=/opt/bmad/node_modules/bmad-method \
    HOME=/home/gaffer
USER 10001:10001
WORKDIR /home/gaffer
EXPOSE 8080 8081
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/gaffer"]
CMD ["--help"]
