// The version `vksd --version` prints; raise it with user-visible changes (docs/cli.md).
#pragma once

#define VKSD_VERSION "0.2.0"
