"""Attribution: gradients, integrated gradients, SmoothGrad, rate–distortion explanations, continuity, and layer-wise relevance propagation (lrp/)."""
