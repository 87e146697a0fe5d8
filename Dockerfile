# syntax=docker/dockerfile:1

# authgate: a static binary on distroless, running as nonroot (65532).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t authgate .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -v ./legacy-hs256:/var/run/secrets/authgate/legacy-hs256:ro authgate
#
# The image carries configs/authgate.yaml as /etc/authgate/authgate.yaml;
# mount another file there (deploy/kubernetes/configmap.yaml does) or
# override single keys with AUTHGATE_* variables.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -tags disable_grpc_modules \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/authgate ./cmd/authgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authgate /authgate
COPY configs/authgate.yaml /etc/authgate/authgate.yaml
USER nonroot
# 8080: proxy, forward-auth and token API; 9090: /healthz, /readyz, /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["/authgate"]
CMD ["serve", "--config", "/etc/authgate/authgate.yaml"]
