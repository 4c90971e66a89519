// reach: can the container's user get to its rootfs and bind sources at all?
//
// The child looks up the rootfs and every bind source after it has become
// the spec's user (stages.cc, step 2), with that user's permissions. A
// directory on the way that the user may not search (a checkout under
// root's 0700 home, say) would end the start deep in the child with a bare
// "Permission denied". prepare() asks here first, so the one line names the
// directory that blocks and the ids that cannot pass it:
//     root.path '/root/x/rootfs': uid 3999 (gid 3999) cannot search '/root' (mode 0700, owner 0:0)
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "base/error.h"
#include "mounts.h"
#include "spec.h"

namespace pukaipu {

// Pure. May a process with fsuid `uid`, fsgid `gid` and no supplementary
// groups (the child has none) search a directory of `mode` owned by
// owner:group? The first class that matches decides, as in the kernel: the
// owner's bits for the owner, else the group's for the group, else the
// others'. `capable`: owner and group are both mapped in the container's
// user namespace, where the child still holds CAP_DAC_READ_SEARCH during
// the mounts (until stages.cc step 11), so it may search anyway.
[[nodiscard]] bool maySearch(mode_t mode, uid_t owner, gid_t group, uid_t uid, gid_t gid, bool capable) noexcept;

// Walks the absolute `path` from '/' down, each prefix as stat() follows
// it (and `path` itself unless `parentsOnly`), and fails on the first
// directory the spec's user (process.user mapped to host ids) may not
// search, with `what` in front: "WHAT: uid U (gid G) cannot search 'DIR'
// (mode 0700, owner O:G)". A prefix that is missing or no directory ends
// the walk without an error: whoever uses the path reports that.
// ACLs are out of scope: a directory that carries one is not judged (its
// ACL may grant what the mode bits deny), the kernel decides there.
[[nodiscard]] Result<void> checkSearchable(const std::string& what, const std::string& path, bool parentsOnly,
					   const Spec& spec);

// The rootfs (itself too: the child changes into it) and the directories
// above every bind source that is not guarded (a guarded source is opened
// and checked by the child, as the user: openGuardedSource).
[[nodiscard]] Result<void> checkReach(const Spec& spec, const std::vector<MountPlan>& mounts);

} // namespace pukaipu
