"""`zsp demo`: the whole system, offline on the CPU, in about a minute (at most 3).

Three processes talk over ROS 2 (Fast DDS, localhost):

1. **zsp_node** (its own process) with the model kit (default: the embedded kit);
2. **a camera** (zsp_ros.node.synthetic_camera) streaming synthetic-world scenes, each holding
   categories the kit has never seen, at a steady rate;
3. **the calling process**, a client that drives the node's lifecycle (configure, activate),
   records every result, calls ``add_categories`` with the unseen names part way through the
   stream, then ``list_categories``.

One idea per module (each imports only those above it in this list, plus the layers below):

- `failure`: ``DemoFailure``, the one error a part of the demo raises (its message is the reason);
- `scenes`: the scene set the camera streams and the kit's unseen categories;
- `recording`: what the client saw (results, overlays, camera log) and the phase of a result;
- `scoring`: PQ before/after the add and latency, from a recording (pure numpy);
- `pictures`: overlays and the contact sheet written to the output folder (zsp_ros.drawing);
- `processes`: starting and stopping the node, camera and client, and waiting on them;
- `run`: ``run_demo`` (the sequence above), the report and the printed table; ``run(args)`` is
  what `zsp demo` (zsp_ros.cli.demo) calls.
"""
