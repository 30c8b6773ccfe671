#pragma once
// Runs an awaitable to completion on a private io_context (unit tests of coroutine code).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <utility>

namespace tagd::testing {

template <class T>
T run_sync(boost::asio::awaitable<T> awaitable) {
  boost::asio::io_context ctx;
  auto future = boost::asio::co_spawn(ctx, std::move(awaitable), boost::asio::use_future);
  ctx.run();
  return future.get();
}

}  // namespace tagd::testing
