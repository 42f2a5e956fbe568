# narwhal on scratch: a static, stripped binary and nothing else.
#
#   docker build -t narwhal .                          narwhal alone, to COPY --from= into your image
#   docker build --target example -t narwhal-demo .    the Go example worker behind narwhal
#   docker run -p 8080:8080 narwhal-demo               a pool on :8080, metrics on :9090
#
# The final stages run as uid 65532 (no /etc/passwd needed), on a read-only root if you like:
# narwhal needs no file, and its control socket is abstract.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/narwhal . \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/example-go ./examples/go

FROM scratch AS example
COPY --from=build /out/narwhal /narwhal
COPY --from=build /out/example-go /app/server
USER 65532:65532
ENV NARWHAL_LISTEN=:8080
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/narwhal", "--healthcheck"]
ENTRYPOINT ["/narwhal"]
CMD ["/app/server"]

FROM scratch AS narwhal
COPY --from=build /out/narwhal /narwhal
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/narwhal", "--healthcheck"]
ENTRYPOINT ["/narwhal"]
