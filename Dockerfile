# syntax=docker/dockerfile:1
# vetcd image: one static binary on distroless, running as non-root
# (uid 65532). Build: docker build -t vetcd .
ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -ldflags="-s -w" -o /out/vetcd ./cmd/vetcd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vetcd /usr/local/bin/vetcd
USER 65532:65532
# client, peer, agent, metrics (/metrics, /healthz, /readyz)
EXPOSE 2379 2380 2381 2382
ENTRYPOINT ["/usr/local/bin/vetcd"]
CMD ["serve", "--config", "/etc/vetcd/config.yaml"]
