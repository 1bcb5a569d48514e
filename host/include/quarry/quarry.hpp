#pragma once
// quarry: GPU-accelerated active-learning selection. Include this one header.

#include "quarry/api.hpp"
#include "quarry/array.hpp"
#include "quarry/error.hpp"
#include "quarry/interrupt.hpp"
#include "quarry/measures.hpp"
#include "quarry/options.hpp"
#include "quarry/resources.hpp"
#include "quarry/shard.hpp"
#include "quarry/types.hpp"
