"""Train MyNet in plain PyTorch on sklearn's digits and save it three ways.

The images are fastlrwa's digits training split (1437 images, 32x32, uint8), so the teacher never sees the 360
test images the distilled student is measured on. MyNet is trained on pixels normalised with mean 0.5 and
std 0.5 (not the dataset's statistics): fastlrwa is told so with --teacher-mean 0.5 --teacher-std 0.5.
"""

import torch
import torch.nn.functional as F
from mynet import MyNet

from fastlrwa.data import load_split

MEAN, STD = 0.5, 0.5

torch.manual_seed(0)
train, test = load_split("digits", "train"), load_split("digits", "test")
x_train, y_train = (train.images.float() / 255 - MEAN) / STD, train.labels
x_test, y_test = (test.images.float() / 255 - MEAN) / STD, test.labels

model = MyNet()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
for _ in range(15):
    model.train()
    for batch in torch.randperm(len(x_train)).split(64):
        optimizer.zero_grad()
        F.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
        optimizer.step()
model.eval()
with torch.no_grad():
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item() * 100
print(f"MyNet test accuracy: {accuracy:.2f}%")

torch.save(model.state_dict(), "mynet_weights.pt")  # 1. a state_dict of your own class
torch.jit.save(torch.jit.script(model), "mynet_script.pt")  # 2. TorchScript
batch = torch.export.Dim("batch")  # 3. torch.export, in eval mode, with a dynamic batch dimension
program = torch.export.export(model, (x_test[:2],), dynamic_shapes=({0: batch},))
torch.export.save(program, "mynet.pt2")
