#pragma once
// Internal to the gateway module: the upload notifications a confirmed write produces
// (src/notify records and delivers them).
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <vector>

#include "exchange.hpp"
#include "tagd/core/body_source.hpp"
#include "tagd/notify/notifier.hpp"
#include "tagd/s3/operation.hpp"
#include "tagd/upstream/client.hpp"

namespace tagd::gateway {

// Whether this request can produce an event some endpoint wants (no extra work otherwise).
bool notification_wanted(const notify::Notifier& notifier, const Exchange& ex,
                         const std::vector<s3::ObjectRef>& written);

// After the upstream answered 2xx, before the client hears of it: works out the events
// (a CopyObject or CompleteMultipartUpload whose 200 carries <Error> produces none; the
// keys of DeleteObjects that the answer lists as errors produce none; copies and multipart
// uploads take their ETag from the answer and their size from a HEAD upstream) and waits until they are fsynced in the
// outbox. When the events depended on the answer's body, the body was read (bounded) and
// is returned to be relayed instead of `answer`; null: relay `answer` as it is.
// An error (the outbox failed, a HEAD failed, an oversized body) is what the client gets.
boost::asio::awaitable<Result<std::unique_ptr<BodySource>>> record_notifications(
    notify::Notifier& notifier, upstream::Client& client, const Exchange& ex, const std::vector<s3::ObjectRef>& written,
    std::uint64_t payload_bytes, upstream::Response& answer);

}  // namespace tagd::gateway
