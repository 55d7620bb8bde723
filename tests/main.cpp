// Catch2 entry point for scion's test executable.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
