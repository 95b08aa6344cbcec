"""Multi-PIE 68-point landmarks as MediaPipe face-mesh indices (written by
tools/build_landmark_correspondence.py: the MediaPipe landmark nearest to each of the ICT
head's 68 landmark vertices on its mean shape; the jaw points 0-16 only approximately)."""

#: ``MULTIPIE68_TO_MEDIAPIPE[i]``: MediaPipe index of Multi-PIE point i (0-based).
MULTIPIE68_TO_MEDIAPIPE = (143, 116, 147, 213, 138, 169, 170, 171, 152, 396, 395, 394, 367, 433, 376, 345, 372, 46, 63, 105, 66, 107, 336, 296, 334, 333, 298, 168, 197, 195, 4, 240, 97, 2, 326, 460, 7, 471, 469, 155, 153, 163, 382, 476, 474, 249, 390, 380, 61, 39, 37, 0, 267, 269, 306, 321, 314, 17, 84, 91, 62, 81, 15, 402, 308, 402, 15, 81)
#: Distance (mm) on the ICT mean head between each Multi-PIE point and its MediaPipe one.
DISTANCE_MM = (35.0, 33.5, 29.1, 19.8, 6.5, 11.3, 7.3, 4.0, 3.0, 2.9, 6.7, 9.5, 5.2, 18.4, 28.4, 33.8, 35.8, 10.7, 7.0, 7.8, 8.3, 5.4, 7.0, 9.8, 9.0, 7.5, 9.0, 0.8, 3.5, 1.9, 1.5, 3.9, 1.5, 2.8, 2.8, 4.2, 4.6, 4.1, 4.5, 0.8, 2.1, 2.4, 1.0, 4.1, 4.5, 4.9, 3.0, 1.5, 1.1, 3.5, 0.8, 0.2, 0.8, 2.8, 0.5, 2.7, 2.7, 1.2, 3.3, 1.4, 1.1, 1.7, 4.3, 1.9, 1.5, 0.9, 3.9, 1.1)
