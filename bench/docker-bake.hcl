# docker buildx bake side of bench/run: the seed Dockerfiles, built the way
# mbuild's //infra:compose builds them (runtime stages, loaded into the engine).
#
#   cd bench && docker buildx bake                 # both targets
#   cd bench && docker buildx bake --print         # resolved config

variable "CACERT" {
  default = "/etc/ssl/certs/ca-certificates.crt"
}

# The repository root (build context). Relative paths are taken from the
# directory bake runs in; bench/run always runs bake from bench/.
variable "CONTEXT" {
  default = ".."
}

variable "TAG_PREFIX" {
  default = "mbuild-bench-bake"
}

group "default" {
  targets = ["python", "node"]
}

target "_common" {
  context = "${CONTEXT}"
  target  = "runtime"
  secret  = ["id=cacert,src=${CACERT}"]
  output  = ["type=docker"]
}

target "python" {
  inherits   = ["_common"]
  dockerfile = "infra/docker/python.Dockerfile"
  tags       = ["${TAG_PREFIX}-python:latest"]
}

target "node" {
  inherits   = ["_common"]
  dockerfile = "infra/docker/node.Dockerfile"
  tags       = ["${TAG_PREFIX}-node:latest"]
}
